"""Write packed blocks into size-limited webdataset tar shards, one shard series per work unit.

Shards are named by work unit, not by rank (``train/u000003-00012.tar``), so the same inputs
give the same file names and bytes for any number of ranks and after any crash-and-rerun.
Each shard is written as ``*.tar.tmp``, fsynced, and renamed, so a ``*.tar`` is always whole
(webdataset's ShardWriter renames inside a callback that can run before the flush; we don't
use it). Members carry ``mtime=0`` and uid/gid 0, so identical content gives identical bytes.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import tarfile

import numpy as np

__all__ = ["ShardWriter", "shard_name", "sample_key", "remove_unit_files"]

_TAR_BLOCK = 512
_TAR_END = 2 * _TAR_BLOCK


def shard_name(split: str, unit: int, shard: int) -> str:
    """Shard path relative to the output dir; sorts in unit order, then shard order."""
    return f"{split}/u{unit:06d}-{shard:05d}.tar"


def sample_key(split: str, unit: int, shard: int, sample: int) -> str:
    """Tar member key: no dots, <= 27 bytes, unique within the output directory (split included)."""
    return f"{split}-u{unit:06d}-{shard:05d}-{sample:07d}"


def remove_unit_files(root: str, split: str, unit: int) -> None:
    """Delete shards (whole or partial) left by an earlier, unfinished attempt at ``unit``."""
    for path in glob.glob(os.path.join(root, split, f"u{unit:06d}-*.tar*")):
        os.remove(path)


class _HashingFile:
    """File wrapper that hashes and counts every byte tarfile writes."""

    def __init__(self, fh) -> None:
        self._fh, self.sha = fh, hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def tell(self) -> int:
        return self.size


class ShardWriter:
    """Append ``[n, sample_tokens]`` blocks to one split's shards of one work unit.

    Args:
        root: Output directory (holds ``train/`` and ``val/``).
        split: ``"train"`` or ``"val"``.
        unit: Work-unit index (names the shards).
        max_bytes: A shard is closed before it would exceed this size (>= one sample each).
        dtype: ``uint16`` / ``uint32``; stored little-endian.
    """

    def __init__(self, root: str, split: str, unit: int, max_bytes: int, dtype: str) -> None:
        self.root, self.split, self.unit, self.max_bytes = root, split, unit, max_bytes
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.records: list[dict] = []
        self._shard = -1
        self._tar: tarfile.TarFile | None = None
        os.makedirs(os.path.join(root, split), exist_ok=True)

    def write(self, blocks: np.ndarray) -> None:
        """Write each row of ``blocks`` as one sample."""
        for row in blocks:
            data = row.astype(self.dtype, copy=False).tobytes()
            member = _TAR_BLOCK + -(-len(data) // _TAR_BLOCK) * _TAR_BLOCK
            if self._tar is None or (
                self._samples > 0 and self._hasher.size + member + _TAR_END > self.max_bytes
            ):
                self._open_next()
            info = tarfile.TarInfo(
                f"{sample_key(self.split, self.unit, self._shard, self._samples)}.tokens"
            )
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
            self._samples += 1
            self._tokens += len(row)

    def _open_next(self) -> None:
        self._close_current()
        self._shard += 1
        rel = shard_name(self.split, self.unit, self._shard)
        self._rel, self._samples, self._tokens = rel, 0, 0
        self._fh = open(os.path.join(self.root, rel + ".tmp"), "wb")  # noqa: SIM115
        self._hasher = _HashingFile(self._fh)
        self._tar = tarfile.open(fileobj=self._hasher, mode="w", format=tarfile.USTAR_FORMAT)

    def _close_current(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())  # the rename below must never expose unflushed bytes
        self._fh.close()
        final = os.path.join(self.root, self._rel)
        os.replace(final + ".tmp", final)
        self.records.append(
            {
                "path": self._rel,
                "samples": self._samples,
                "tokens": self._tokens,
                "sha256": self._hasher.sha.hexdigest(),
            }
        )
        self._tar = None

    def close(self) -> list[dict]:
        """Finish the open shard; return ``[{path, samples, tokens, sha256}]`` in write order."""
        self._close_current()
        return self.records
