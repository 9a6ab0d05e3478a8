"""Import megatron-core without its known-harmless start-up noise.

megatron-core's package import logs three INFO lines from its bundled Megatron-FSDP (which
we do not use) and, on hosts without Transformer Engine or Apex, four ``UserWarning``s that
it falls back to torch implementations, once per process. Both are filtered here, at their
source, by logger name and by message; anything else megatron-core says still shows.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_megatron_import"]

_FSDP_LOGGER = "megatron.core.distributed.fsdp"
_FALLBACK_WARNING = r"Transformer Engine and Apex are not installed"


def quiet_megatron_import() -> None:
    """Silence megatron-core's import-time noise; call before the first ``import megatron``."""
    logging.getLogger(_FSDP_LOGGER).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=_FALLBACK_WARNING, category=UserWarning)
