"""Megatron-LM / GPT-NeoX indexed datasets (``PREFIX.bin`` + ``PREFIX.idx``) as shard.py input.

Corpora already tokenized for Megatron-LM or GPT-NeoX (``tools/preprocess_data.py``; the
Pile is commonly distributed this way) become this project's shards without re-tokenizing.
The files are read with megatron-core's own ``IndexedDataset``, so every index version and
token dtype Megatron writes is understood exactly as Megatron understands it.

- A *document* is what the ``.idx`` calls one (``document_indices``); a document made of
  several sequences (``--split-sentences``) is their concatenation.
- Each document ends with exactly one EOD in our shards: an EOD the dataset already carries
  (``--append-eod``) is kept, one is appended otherwise; then packing is the same as for
  text input (per work unit, tail dropped).
- The train/val draw hashes the document's ids (without the trailing EOD), so it is stable
  across runs, rank counts and the ``--append-eod`` choice of the original preprocessing.
- Work units are document ranges of about ``--unit-size-mb`` bytes of tokens; a unit reads
  one contiguous span of the ``.bin`` and records its sha256 (the manifest's ``imported``).
- An id outside the tokenizer's vocabulary stops the import naming the file and document:
  it means the dataset was made with another tokenizer.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from data_prep.errors import InputError
from data_prep.readers import Piece
from megatron_patches.quiet import quiet_megatron_import

__all__ = [
    "IndexedInputError",
    "IndexedBatch",
    "indexed_prefix",
    "plan_indexed_pieces",
    "iter_indexed_batches",
]

#: Documents handed to the packer at a time (bounds memory, amortises Python overhead).
_BATCH_DOCS = 4096


class IndexedInputError(InputError):
    """A ``.bin/.idx`` input that cannot be imported as asked (exit 2); names file and fix."""


def indexed_prefix(path: str) -> str:
    """``PREFIX`` of ``PREFIX.idx`` / ``PREFIX.bin`` (the Megatron ``--data-path`` form)."""
    for suffix in (".idx", ".bin"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


@lru_cache(maxsize=8)
def _open(prefix: str):
    """megatron-core's ``IndexedDataset`` for ``prefix`` (mmap; opened once per process)."""
    if not (os.path.exists(prefix + ".idx") and os.path.exists(prefix + ".bin")):
        missing = prefix + (".bin" if os.path.exists(prefix + ".idx") else ".idx")
        raise IndexedInputError(
            f"{missing} does not exist: a Megatron indexed dataset is a PREFIX.bin + "
            f"PREFIX.idx pair; pass --input PREFIX.idx with both files beside each other")
    quiet_megatron_import()
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    # Its index reader logs each loading step at INFO; one line per file is ours to write.
    logging.getLogger("megatron.core.datasets.indexed_dataset").setLevel(logging.WARNING)
    try:
        return IndexedDataset(prefix, multimodal=False, mmap=True)
    except (AssertionError, ValueError, KeyError, OSError) as exc:
        raise IndexedInputError(
            f"{prefix}.idx is not a readable Megatron indexed dataset index ({exc!r}); "
            f"regenerate it with Megatron-LM's tools/preprocess_data.py") from exc


@dataclass(frozen=True, slots=True)
class _Layout:
    """Token offsets of every document of one dataset (int64, length documents + 1)."""

    doc_token_starts: np.ndarray
    itemsize: int


@lru_cache(maxsize=8)
def _layout(prefix: str) -> _Layout:
    ds = _open(prefix)
    lengths = np.asarray(ds.sequence_lengths, dtype=np.int64)
    seq_starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=seq_starts[1:])
    itemsize = np.dtype(ds.index.dtype).itemsize
    pointers = np.asarray(ds.index.sequence_pointers, dtype=np.int64)
    if len(pointers) and not np.array_equal(pointers, seq_starts[:-1] * itemsize):
        # Every file Megatron's builder writes is contiguous; we read document ranges as
        # one span of the .bin, so anything else would be misread rather than imported.
        raise IndexedInputError(
            f"{prefix}.idx describes sequences that are not stored back to back in "
            f"{prefix}.bin; re-create the dataset with Megatron-LM's tools/merge_datasets.py")
    return _Layout(seq_starts[np.asarray(ds.document_indices, dtype=np.int64)], itemsize)


def plan_indexed_pieces(idx_path: str, unit_bytes: int) -> list[Piece]:
    """Cut one dataset into document ranges of about ``unit_bytes`` bytes of tokens.

    Depends only on the file and ``unit_bytes``, never on the rank count. ``Piece.start`` /
    ``Piece.stop`` are document indices; ``est_bytes`` the range's token bytes.
    """
    layout = _layout(indexed_prefix(idx_path))
    starts = layout.doc_token_starts
    n_docs = len(starts) - 1
    if n_docs <= 0:
        return [Piece(idx_path, "indexed", 0, 0, 0)]
    unit_tokens = max(unit_bytes // layout.itemsize, 1)
    total = int(starts[-1])
    targets = np.arange(unit_tokens, total, unit_tokens, dtype=np.int64)
    cuts = np.unique(np.searchsorted(starts, targets, side="left"))
    bounds = [0, *[int(c) for c in cuts if 0 < c < n_docs], n_docs]
    return [
        Piece(idx_path, "indexed", a, b, int(starts[b] - starts[a]) * layout.itemsize)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if b > a
    ]


@dataclass(slots=True)
class IndexedBatch:
    """Consecutive documents of one piece, ready to pack.

    Attributes:
        first_doc: Index (in the dataset) of ``docs[0]``.
        docs: Each document's ids as int64, trailing EOD removed (the packer adds one);
            empty for a document that held nothing else.
    """

    first_doc: int
    docs: list[np.ndarray]


def iter_indexed_batches(
    piece: Piece, eod_id: int, vocab_size: int, sha: hashlib._Hash
) -> Iterator[IndexedBatch]:
    """Yield the documents of ``piece`` in batches; feed the span's bytes into ``sha``.

    Raises:
        IndexedInputError: an id < 0 or >= ``vocab_size`` (names file, document and id).
    """
    prefix = indexed_prefix(piece.path)
    ds, layout = _open(prefix), _layout(prefix)
    starts = layout.doc_token_starts
    for first in range(piece.start, piece.stop, _BATCH_DOCS):
        last = min(first + _BATCH_DOCS, piece.stop)
        t0, t1 = int(starts[first]), int(starts[last])
        if t1 == t0:
            yield IndexedBatch(first, [np.empty(0, np.int64)] * (last - first))
            continue
        first_seq = int(ds.document_indices[first])
        span = ds.get(first_seq, offset=0, length=t1 - t0)
        sha.update(np.ascontiguousarray(span).data)
        ids = span.astype(np.int64)
        bad = (ids < 0) | (ids >= vocab_size)
        if bad.any():
            pos = int(np.argmax(bad))
            doc = first + int(np.searchsorted(starts[first:last + 1], t0 + pos, side="right")) - 1
            raise IndexedInputError(
                f"{prefix}.bin document {doc} holds token id {int(ids[pos])}, outside the "
                f"vocabulary of --tokenizer (vocab_size {vocab_size}): import with the "
                f"tokenizer this dataset was made with")
        docs = []
        for d in range(first, last):
            doc = ids[int(starts[d]) - t0:int(starts[d + 1]) - t0]
            docs.append(doc[:-1] if len(doc) and doc[-1] == eod_id else doc)
        yield IndexedBatch(first, docs)
