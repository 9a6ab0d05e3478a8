"""Process-wide logging for the entrypoints: rank-tagged lines, INFO on rank 0 only."""

from __future__ import annotations

import logging
import os
import sys

from megatron_patches.quiet import quiet_megatron_import
from pretrain.runtime.launcher import detect_rank_layout

__all__ = ["setup_logging"]


def setup_logging() -> None:
    """Log to stdout as ``time [rank r] LEVEL name: message``; other ranks log warnings up
    (every rank logs INFO with ``LEV_LOG_ALL_RANKS=1``, for debugging one rank).

    Called before torch.distributed exists, so the rank comes from the launcher's variables.
    """
    # megatron-core's known-harmless import noise (the model's log line already says
    # which layer spec is used).
    quiet_megatron_import()
    rank = detect_rank_layout().rank
    logging.basicConfig(
        level=logging.INFO if rank == 0 or os.environ.get("LEV_LOG_ALL_RANKS") == "1"
        else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
