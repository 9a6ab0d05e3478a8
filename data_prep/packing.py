"""Train/val assignment by document hash, and packing of token streams into fixed blocks."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["is_val", "is_val_ids", "Packer"]

_HASH_SPACE = float(1 << 64)


def is_val(text: str, val_fraction: float) -> bool:
    """True when the document goes to the val split.

    Decided by a hash of the text alone, so the split is the same on every run, for any rank
    count and input order, and identical documents always land in the same split.
    """
    if val_fraction <= 0.0:
        return False
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < val_fraction * _HASH_SPACE


def is_val_ids(ids: np.ndarray, val_fraction: float) -> bool:
    """``is_val`` for a document that arrives as token ids (imported ``.bin/.idx``).

    Hashes the ids as little-endian uint32, so the draw does not depend on the dtype the
    original dataset stored them in.
    """
    if val_fraction <= 0.0:
        return False
    digest = hashlib.blake2b(np.asarray(ids, dtype="<u4").tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < val_fraction * _HASH_SPACE


class Packer:
    """Concatenate documents (each followed by EOD) and cut the stream into blocks.

    Args:
        block_tokens: Tokens per block (``seq_length + 1``).
        eod_id: Appended after every document.
        dtype: numpy dtype of the ids (``uint16`` / ``uint32``).
    """

    def __init__(self, block_tokens: int, eod_id: int, dtype: str) -> None:
        self.block_tokens = block_tokens
        self.eod_id = eod_id
        self.dtype = np.dtype(dtype)
        self._pending = np.empty(0, dtype=self.dtype)

    def add(self, docs: list[list[int]]) -> np.ndarray:
        """Append ``docs`` to the stream; return the completed blocks, shape ``[n, block_tokens]``."""
        flat: list[int] = []
        eod = self.eod_id
        for ids in docs:
            flat.extend(ids)
            flat.append(eod)
        return self._cut(np.concatenate([self._pending, np.array(flat, dtype=self.dtype)]))

    def add_arrays(self, docs: list[np.ndarray]) -> np.ndarray:
        """``add`` for documents that are already id arrays (no EOD; one is appended)."""
        eod = np.array([self.eod_id], dtype=self.dtype)
        parts = [self._pending]
        for ids in docs:
            parts.append(ids.astype(self.dtype, copy=False))
            parts.append(eod)
        return self._cut(np.concatenate(parts))

    def _cut(self, stream: np.ndarray) -> np.ndarray:
        n_blocks = len(stream) // self.block_tokens
        cut = n_blocks * self.block_tokens
        self._pending = stream[cut:].copy()
        return stream[:cut].reshape(n_blocks, self.block_tokens)

    @property
    def pending_tokens(self) -> int:
        """Tokens waiting for a block; dropped at the end of a unit (``tail_tokens_dropped``)."""
        return len(self._pending)
