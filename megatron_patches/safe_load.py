"""Checkpoint files load as data, never as code: ``torch.load(weights_only=True)`` with an
explicit allowlist of the few non-tensor globals that this project's and DeepSpeed's files
hold.

A pickle can name any importable callable and have the unpickler call it, so a checkpoint
that someone else can write (a group-writable save dir, a checkpoint handed over by
another team) would otherwise run their code in the job that resumes, evaluates, exports
or generates from it. ``weights_only=True`` refuses every global outside torch's own safe
set; :data:`ALLOWED_GLOBALS` adds what our files need and nothing more. The list was read
with ``torch.serialization.get_unsafe_globals_in_checkpoint`` off real CPU checkpoints saved
at ZeRO 0/1/2/3, fp32 and bf16, TP 1 and 2 (``tests/pretrain/test_trust_checkpoints.py``
fails when a checkpoint of the test session, fp32 ZeRO-1/3 and TP 2, needs a global outside
it, or the list holds one that none needs). Not yet read off a GPU run with Transformer
Engine layers: the GPU check's resume step (``scripts/gpu_check``) loads through it. A file holding any other global is
refused with :class:`UnsafeCheckpointError` (exit 78, ``docs/trust.md``), naming the file
and the global.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from typing import Any

import numpy as np
import torch

from megatron_patches.quiet import quiet_deepspeed

# This module is imported before any engine is built (pretrain.train, the checkpoint
# manager): DeepSpeed's import-time noise must be silenced before its first import here.
quiet_deepspeed(torch.cuda.is_available())

from deepspeed.runtime.fp16.loss_scaler import LossScaler  # noqa: E402
from deepspeed.runtime.zero.config import ZeroStageEnum  # noqa: E402
from deepspeed.utils.tensor_fragment import fragment_address  # noqa: E402

__all__ = ["ALIASES", "ALLOWED_GLOBALS", "UnsafeCheckpointError", "refusal", "restricted_load",
           "unsafe_globals"]

#: Non-tensor globals our checkpoint files hold, beyond torch's own weights-only set.
ALLOWED_GLOBALS: tuple[Any, ...] = (
    # rng_rank*.pt: numpy's RNG state is a (str, ndarray of uint32, int, int, float) tuple.
    np._core.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    np.dtypes.UInt32DType,  # built by np.dtype's reduce, so the scan does not list it
    # DeepSpeed's ZeRO optimizer states: the loss scaler object, the stage as an enum,
    # and the fragment addresses of the flat partition (ZeRO-1/2, bf16 optimizer).
    LossScaler,
    ZeroStageEnum,
    fragment_address,
)


#: The same globals under the names older library versions pickle them with: numpy 1.x
#: writes ``numpy.core``, numpy 2 ``numpy._core`` (an RNG file saved under either loads).
ALIASES: tuple[tuple[Any, str], ...] = (
    (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
)


class UnsafeCheckpointError(Exception):
    """A checkpoint file names a global outside :data:`ALLOWED_GLOBALS`: loading it could
    run code, so it is refused (exit 78)."""


def _global_name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


_ALLOWED_NAMES = frozenset(_global_name(g) for g in ALLOWED_GLOBALS)
_ALIAS_NAMES = frozenset(name for _, name in ALIASES)
_UNSUPPORTED = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")


def unsafe_globals(path: str | os.PathLike) -> list[str]:
    """The globals ``path`` names outside torch's safe set and :data:`ALLOWED_GLOBALS`,
    read from the pickle's opcodes without importing or calling anything (a cheap check
    before loading; ``[]`` for a file in the legacy serialization, which
    :func:`restricted_load` still guards)."""
    if not zipfile.is_zipfile(path):
        return []
    return sorted(g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                  if g not in _ALLOWED_NAMES | _ALIAS_NAMES)


def _offending_global(path: str | os.PathLike, error: Exception) -> str:
    """The global that made the weights-only unpickler refuse ``path``, as well as known."""
    try:
        unknown = unsafe_globals(path)
    except Exception:  # noqa: BLE001 - torch's message below still names it
        unknown = []
    if unknown:
        return ", ".join(unknown)
    found = _UNSUPPORTED.search(str(error))
    if found:
        return found.group(1) or found.group(2)
    detail = str(error).partition("WeightsUnpickler error:")[2].strip()
    return detail.splitlines()[0] if detail else "(unnamed)"


def restricted_load(path: str | os.PathLike, map_location: Any = None, *,
                    mmap: bool = False) -> Any:
    """``torch.load`` of a checkpoint file that can hold tensors and the allowlisted
    globals only.

    Args:
        path: the file (zip serialization, or the legacy one that cannot be mapped).
        map_location: as for ``torch.load``.
        mmap: memory-map the file instead of reading it (zip serialization only).

    Raises:
        UnsafeCheckpointError: the file names another global; nothing in it ran.
    """
    try:
        with torch.serialization.safe_globals([*ALLOWED_GLOBALS, *ALIASES]):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise  # a damaged file, not a refused one
        name = _offending_global(path, exc)
        raise UnsafeCheckpointError(refusal(path, name)) from None


def refusal(path: str | os.PathLike, name: str) -> str:
    """The one-line refusal of ``path`` for naming the global ``name``."""
    return (f"refused to load {os.fspath(path)}: it names the global {name}, which no "
            f"checkpoint of this project holds (loading it could run code). Use a checkpoint "
            f"from a source you trust, or resume from an earlier tag written by your own "
            f"runs; see docs/trust.md")
