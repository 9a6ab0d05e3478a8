"""megatron-core and DeepSpeed without their known-harmless start-up noise.

Each filter removes one message we know to be harmless, at its source (a logger name or a
warning's text); anything else these libraries say still shows, and nothing of ours is
hidden:

- megatron-core's package import logs three INFO lines from its bundled Megatron-FSDP
  (which we do not use) and, without Transformer Engine or Apex, four ``UserWarning``s that
  it falls back to torch implementations; its ``TransformerConfig`` warns that the
  ``full`` CUDA-graph scope default is deprecated (we use no CUDA graphs).
- DeepSpeed warns "Setting accelerator to CPU" on a host without CUDA (we set it), and
  "ZeRO with an untested optimizer" (we hand it torch's AdamW on purpose: its fused and
  CPU Adam need compiled ops); its ZeRO-3 calls collectives torch 2.13 renamed (a
  ``FutureWarning`` per call site). On CPU it also compiles, with gcc, a shared-memory
  all-reduce op (reported at ~40 s for a first start) that only its inference engine
  uses; training reduces through torch.distributed (gloo), so the op is not built.
"""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["quiet_deepspeed", "quiet_megatron_import"]

log = logging.getLogger(__name__)

_FSDP_LOGGER = "megatron.core.distributed.fsdp"
_MEGATRON_WARNINGS = (r".*Transformer Engine and Apex are not installed",
                      r".*(Apex|Transformer Engine).*not installed",
                      r"full scope is deprecated")
_DEEPSPEED_MESSAGES = ("untested optimizer",)
#: torch 2.13 deprecates the collective names ZeRO-3 calls (all_gather_into_tensor, ...).
_DEEPSPEED_WARNINGS = (r"`torch\.distributed\.\w+` is deprecated",)


def quiet_megatron_import() -> None:
    """Silence megatron-core's known noise; call before the first ``import megatron``."""
    logging.getLogger(_FSDP_LOGGER).setLevel(logging.WARNING)
    for message in _MEGATRON_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)


class _DropKnown(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(m in text for m in _DEEPSPEED_MESSAGES)


def quiet_deepspeed(cuda: bool) -> None:
    """Silence DeepSpeed's known noise and, on CPU, skip its shm op build; call before
    ``deepspeed.initialize``."""
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    for message in _DEEPSPEED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    import importlib

    from deepspeed.utils import logger as ds_logger

    # Not `import deepspeed.comm.torch as ...`: deepspeed.comm's own `torch` name (the
    # torch package) shadows its submodule in that form.
    ds_torch_comm = importlib.import_module("deepspeed.comm.torch")

    if not any(isinstance(f, _DropKnown) for f in ds_logger.filters):
        ds_logger.addFilter(_DropKnown())
    if not cuda and getattr(ds_torch_comm.build_shm_op, "__name__", "") != "_no_shm_op":
        def _no_shm_op():
            return None

        ds_torch_comm.build_shm_op = _no_shm_op
