"""Make every file one DeepSpeed engine writes durable, and remember which ones it wrote.

DeepSpeed 0.19.8 writes checkpoints through ``engine.checkpoint_engine.save`` (a
``torch.save``) and never fsyncs them: after a node crash on Lustre/GPFS/NFS the page
cache of that node is lost and a shard can be truncated although the save "finished".
This module wraps ``save`` on *one engine's* checkpoint engine (not the class): after
each file it ``fsync``s it and records its path, so the caller can list what this rank
wrote (with sizes and checksums) in the commit marker. Nothing else changes.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

__all__ = ["fsync_file", "track_checkpoint_writes"]


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush ``path``'s data to stable storage (a node crash cannot truncate it after)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def track_checkpoint_writes(engine) -> list[Path]:
    """Fsync every file ``engine`` saves from now on; returns the list it appends them to.

    The caller empties the list before a save and reads it after.
    """
    ckpt_engine = engine.checkpoint_engine
    if getattr(ckpt_engine, "_lev_written", None) is not None:
        return ckpt_engine._lev_written
    written: list[Path] = []
    original = ckpt_engine.save

    def save(self, state_dict, path):
        original(state_dict, path)
        fsync_file(path)
        written.append(Path(path))

    ckpt_engine.save = types.MethodType(save, ckpt_engine)
    ckpt_engine._lev_written = written
    return written
