"""Restart reads that scale: DeepSpeed's checkpoint files are memory-mapped, not copied.

At a restart DeepSpeed 0.19.8 has every rank ``torch.load`` the whole model-states file of
its TP rank (``mp_rank_00_model_states.pt``, ~2.5 GB at 1.2B) into private host memory,
although with ZeRO-1/2 the fp32 masters of the optimizer partitions overwrite those
weights right after: 8 ranks of a node hold 8 private copies (~20 GB) for a moment, and
each copy is its own stream of reads. This module wraps ``load`` on *one engine's*
checkpoint engine (not the class) so that files are opened with ``torch.load(mmap=True)``:
every rank of a node maps the same file, the node's page cache holds it once, the shared
file system delivers it once per node (the first rank's page faults fetch it, the others
find it cached), and tensors are only paged in as the loader copies them into the model.
Files written without the zip serialization (which cannot be mapped) are read whole.
Either way the file is loaded by :func:`megatron_patches.safe_load.restricted_load`
(weights only, an allowlist of globals): DeepSpeed's own loader would unpickle anything,
and a checkpoint directory is not always written by the job that reads it.
"""

from __future__ import annotations

import types
import zipfile

from megatron_patches.safe_load import restricted_load

__all__ = ["map_checkpoint_reads"]


def map_checkpoint_reads(engine) -> None:
    """Make ``engine.load_checkpoint`` memory-map the files it reads and refuse any that
    could run code when loaded (idempotent; raises ``UnsafeCheckpointError`` on load)."""
    ckpt_engine = engine.checkpoint_engine
    if getattr(ckpt_engine, "_lev_mapped", False):
        return

    def load(self, path, map_location=None):
        # The legacy serialization cannot be mapped; it is read whole, as DeepSpeed would.
        return restricted_load(path, map_location=map_location, mmap=zipfile.is_zipfile(path))

    ckpt_engine.load = types.MethodType(load, ckpt_engine)
    ckpt_engine._lev_mapped = True
