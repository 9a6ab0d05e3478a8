"""Pretraining data: data_prep's tar shards -> micro-batches of token ids.

Read as a pipeline::

    manifest.json --check_manifest--> <split>.wids.json --TokenShardDataset-->
    sample id -> block of seq_length+1 ids --SampleOrder/BatchLayout (sampler.py)-->
    TrainBatchIterator (one DP rank, background prefetch) -> {tokens, labels, ...}

The on-disk format is ``data_prep/FORMAT.md``. The order in which samples are read is
a pure function of ``(seed, epoch, stream position)`` (see ``pretrain/data/sampler.py``); the
whole data position of a run is the integer ``consumed_samples``.

Batches follow megatron-core's GPT convention: ``tokens`` and ``labels`` are ``[mb, s]``
int64 (``block[:-1]`` and ``block[1:]``), ``loss_mask`` ``[mb, s]`` float32,
``position_ids`` ``[mb, s]`` int64, plus ``sample_ids`` ``[mb]`` int64 (the split's
sample ids read; ``-1`` marks validation padding).

Why the tars are indexed here instead of through ``wids.ShardListDataset``: the shard
*index* is wids' (``<split>.wids.json``, and the tars stay wids-readable -- a test
checks both readers agree), but wids' reader does not fit a global random permutation:
every LRU miss re-opens a shard through its downloader (which writes a ``.lock`` file
next to the shard, failing on read-only data directories) and re-scans every tar
header in Python; its per-shard index costs ~hundreds of bytes per sample in Python
objects; and it never checks ``nsamples``. Every sample here is one fixed-size
``KEY.tokens`` member, so sample ``j`` of a shard sits at ``j * stride + 512``: opening
a shard checks three headers (O(1)), and reading is ``np.frombuffer`` on an ``mmap``
of the tar in place (no copy to ``/tmp``). See ``benchmarks/loader_throughput.py``.
"""

from __future__ import annotations

import json
import mmap
import os
import tarfile
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from data_prep.paths import path_inside

__all__ = [
    "DataMismatchError",
    "ShardCorruptError",
    "ShardIndexError",
    "ShardsNotFoundError",
    "TokenShardDataset",
    "check_manifest",
    "load_manifest",
    "open_split",
]

_FORMAT = "lev-shards"
_FORMAT_VERSION = 1
_BLOCK = 512  # tar header and padding unit
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}  # FORMAT.md: little-endian
_RESHARD_HINT = "run `python data_prep/shard.py --input FILES --tokenizer TOKENIZER.json --output DIR --seq-length N`"


class DataMismatchError(ValueError):
    """The shards were built for a different seq_length, vocabulary or tokenizer."""


class ShardIndexError(ValueError):
    """A shard index (``<split>.wids.json``) disagrees with the tars or the manifest."""


class ShardCorruptError(ShardIndexError):
    """A sample's payload holds token ids outside the tokenizer's vocabulary."""


class ShardsNotFoundError(FileNotFoundError):
    """``manifest.json`` or a ``<split>.wids.json`` is missing from the data directory."""


def _read_json(path: str, what: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise ShardsNotFoundError(
            f"{what} not found: {path}; {_RESHARD_HINT} to write it (see data_prep/FORMAT.md)"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_manifest(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Load ``DIR/manifest.json`` and check it is a format this loader reads.

    Raises:
        ShardsNotFoundError: the manifest is missing (names the path and the command).
        DataMismatchError: the manifest is of another format or version.
    """
    path = os.path.join(os.fspath(data_dir), "manifest.json")
    manifest = _read_json(path, "shard manifest")
    fmt, version = manifest.get("format"), manifest.get("format_version")
    if fmt != _FORMAT or version != _FORMAT_VERSION:
        raise DataMismatchError(
            f"{path}: format={fmt!r} format_version={version!r}, but this loader reads "
            f"format={_FORMAT!r} format_version={_FORMAT_VERSION}; re-shard with the current "
            f"data_prep/shard.py"
        )
    return manifest


def check_manifest(
    manifest: dict[str, Any],
    *,
    seq_length: int,
    vocab_size: int,
    tokenizer_sha256: str | None = None,
    data_dir: str | os.PathLike[str],
) -> None:
    """Refuse shards that do not match the model/config.

    Args:
        manifest: As returned by :func:`load_manifest`.
        seq_length: The model's sequence length; must equal the shards' ``seq_length``.
        vocab_size: The model's (padded) vocabulary size; must be >= the tokenizer's
            ``vocab_size``, else ids would index past the embedding table.
        tokenizer_sha256: sha256 of the tokenizer.json the config names; ``None`` skips
            the check (e.g. a config that does not pin a tokenizer).
        data_dir: Where the manifest came from (for the messages).

    Raises:
        DataMismatchError: naming the field, both values and the fix.
    """
    where = os.path.join(os.fspath(data_dir), "manifest.json")
    shard_seq = manifest.get("seq_length")
    if shard_seq != seq_length:
        raise DataMismatchError(
            f"seq_length mismatch: shards in {where} have seq_length={shard_seq} but the "
            f"config has seq_length={seq_length}; set seq_length={shard_seq} in the config or "
            f"re-shard with `python data_prep/shard.py ... --seq-length {seq_length}`"
        )
    if manifest.get("sample_tokens") != seq_length + 1:
        raise DataMismatchError(
            f"sample_tokens mismatch: {where} has sample_tokens={manifest.get('sample_tokens')} "
            f"but seq_length={shard_seq} needs {seq_length + 1}; the manifest is corrupt, re-shard"
        )
    tok = manifest.get("tokenizer", {})
    tok_vocab = tok.get("vocab_size")
    if not isinstance(tok_vocab, int) or vocab_size < tok_vocab:
        raise DataMismatchError(
            f"vocab_size mismatch: the model's padded vocab_size={vocab_size} is smaller than "
            f"the tokenizer's vocab_size={tok_vocab} recorded in {where}; token ids up to "
            f"{tok_vocab - 1 if isinstance(tok_vocab, int) else '?'} would index past the "
            f"embedding. Set the model's vocab_size >= {tok_vocab} (padded up, e.g. to a "
            f"multiple of 128), or re-shard with the model's tokenizer"
        )
    if manifest.get("dtype") not in _DTYPES:
        raise DataMismatchError(
            f"dtype mismatch: {where} has dtype={manifest.get('dtype')!r}; this loader reads "
            f"{sorted(_DTYPES)}; re-shard with the current data_prep/shard.py"
        )
    if tokenizer_sha256 is not None and tok.get("sha256") != tokenizer_sha256:
        raise DataMismatchError(
            f"tokenizer sha256 mismatch: shards in {where} were tokenized with "
            f"tokenizer sha256={tok.get('sha256')} ({tok.get('path')}) but the config's "
            f"tokenizer has sha256={tokenizer_sha256}; point the config at the shards' "
            f"tokenizer or re-shard with `python data_prep/shard.py --tokenizer YOURS.json ...`"
        )


class _TarShard:
    """One tar shard, mmapped in place; sample ``j`` -> byte offset of its tokens."""

    def __init__(self, path: str, nsamples: int, sample_bytes: int, index_name: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ShardIndexError(f"{path} is empty but {index_name} lists nsamples={nsamples}")
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.nsamples = nsamples
        self.sample_bytes = sample_bytes
        self.stride = _BLOCK + -(-sample_bytes // _BLOCK) * _BLOCK
        self.offsets: np.ndarray | None = None  # None -> fixed-stride layout
        self.size_field = b""
        try:
            if not self._fixed_stride_layout_holds():
                self._scan_members(index_name)
        except BaseException:
            self.mm.close()  # a refused shard must not leak its mapping
            raise

    def _header(self, offset: int) -> tuple[bytes, int | None, bytes]:
        hdr = self.mm[offset : offset + _BLOCK]
        name = hdr[:100].split(b"\0", 1)[0]
        try:
            size = int(hdr[124:136].split(b"\0", 1)[0].strip() or b"x", 8)
        except ValueError:
            size = None
        return name, size, hdr

    def _fixed_stride_layout_holds(self) -> bool:
        # FORMAT.md writes one fixed-size `KEY.tokens` member per sample and nothing
        # else, so headers sit every `stride` bytes. Checking the first and last header
        # and the end-of-archive block right after the last sample proves the count is
        # exactly `nsamples` without reading every header.
        n = self.nsamples
        if len(self.mm) < n * self.stride + 2 * _BLOCK or n == 0:
            return False
        for off in (0, (n - 1) * self.stride):
            name, size, hdr = self._header(off)
            if not name.endswith(b".tokens") or size != self.sample_bytes:
                return False
            if off == 0:
                self.size_field = hdr[124:136]
        return self.mm[n * self.stride : n * self.stride + _BLOCK] == bytes(_BLOCK)

    def _scan_members(self, index_name: str) -> None:
        # Slow path (e.g. a tar with extra or PAX headers): read every header once.
        offsets = []
        with tarfile.open(self.path, "r:") as tf:
            for member in tf:
                if not member.isfile() or not member.name.endswith(".tokens"):
                    continue
                if member.size != self.sample_bytes:
                    raise ShardIndexError(
                        f"{self.path}: member {member.name} has {member.size} bytes, expected "
                        f"{self.sample_bytes} (seq_length+1 ids); the shard is corrupt, re-shard"
                    )
                offsets.append(member.offset_data)
        if len(offsets) != self.nsamples:
            raise ShardIndexError(
                f"nsamples mismatch: {self.path} holds {len(offsets)} samples but {index_name} "
                f"says nsamples={self.nsamples}; the index is stale or the shard was modified. "
                f"Re-run data_prep/shard.py for this directory (or fix the index's nsamples)"
            )
        self.offsets = np.asarray(offsets, dtype=np.int64)

    def data_offset(self, j: int) -> int:
        if self.offsets is not None:
            return int(self.offsets[j])
        off = j * self.stride
        # Cheap per-read guard against a shard whose layout changed under us: the
        # 12-byte size field of every header is identical in a well-formed shard.
        if self.mm[off + 124 : off + 136] != self.size_field:
            raise ShardIndexError(f"{self.path}: sample {j} has no `.tokens` header at byte {off}")
        return off + _BLOCK

    def close(self) -> None:
        self.mm.close()


class TokenShardDataset:
    """Random access to one split: sample id -> ``seq_length + 1`` token ids.

    Shards are found through ``DIR/<split>.wids.json`` (its order is the sample-id
    order) and read in place through ``mmap``. At most ``max_open_shards`` stay open
    (each holds a file descriptor), least recently used closed first. Thread-safe.

    Args:
        data_dir: Directory written by ``data_prep/shard.py``.
        split: ``"train"`` or ``"val"``.
        manifest: The loaded manifest (loaded from ``data_dir`` when omitted).
        max_open_shards: Size of the open-shard LRU cache.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str = "train",
        *,
        manifest: dict[str, Any] | None = None,
        max_open_shards: int = 128,
    ) -> None:
        self.data_dir = os.fspath(data_dir)
        self.split = split
        self.manifest = manifest if manifest is not None else load_manifest(self.data_dir)
        if self.manifest.get("dtype") not in _DTYPES:
            # Reading needs a known dtype even when the caller skipped check_manifest.
            raise DataMismatchError(
                f"dtype mismatch: manifest in {self.data_dir} has dtype="
                f"{self.manifest.get('dtype')!r}; this loader reads {sorted(_DTYPES)}; re-shard"
            )
        self.dtype = _DTYPES[self.manifest["dtype"]]
        self.sample_tokens = int(self.manifest["sample_tokens"])
        self.seq_length = self.sample_tokens - 1
        self.eod_id = int(self.manifest["tokenizer"]["eod_id"])
        # Ids at or past the tokenizer's vocabulary can only come from a corrupt payload.
        self.vocab_limit = int(self.manifest["tokenizer"].get("vocab_size") or 2**32)
        self.max_open_shards = max(1, max_open_shards)

        self.index_path = os.path.join(self.data_dir, f"{split}.wids.json")
        index = _read_json(self.index_path, f"shard index for split {split!r}")
        shards = index.get("shardlist") or []
        if not shards:
            hint = ("these shards have no validation split (--val-fraction 0): set "
                    "train.eval_interval=0, or re-shard with --val-fraction > 0"
                    if split == "val" else "re-shard with more data")
            raise ShardIndexError(f"{self.index_path} lists no shards; {hint}")
        self.paths = [self._resolve(s["url"]) for s in shards]
        lengths = np.asarray([int(s["nsamples"]) for s in shards], dtype=np.int64)
        if (lengths < 0).any():
            raise ShardIndexError(f"{self.index_path} has a negative nsamples")
        self.lengths = lengths
        self.starts = np.concatenate([[0], np.cumsum(lengths)])  # shard k: [starts[k], starts[k+1])
        self.num_samples = int(self.starts[-1])
        expected = self.manifest.get("splits", {}).get(split, {}).get("samples")
        if expected is not None and expected != self.num_samples:
            raise ShardIndexError(
                f"{self.index_path} sums to {self.num_samples} samples but manifest.json says "
                f"splits.{split}.samples={expected}; the directory mixes two shard runs, re-shard"
            )
        if self.num_samples == 0:
            raise ShardIndexError(f"split {split!r} in {self.data_dir} has no samples")
        self._open: OrderedDict[int, _TarShard] = OrderedDict()
        self._lock = threading.Lock()

    def _resolve(self, url: str) -> str:
        if "://" in url:
            raise ShardIndexError(
                f"{self.index_path}: url {url!r} is remote; this loader reads local shards "
                f"(urls relative to the data directory)"
            )
        # The list may come from someone else's directory: an entry must stay inside it.
        return path_inside(self.data_dir, url, listed_in=self.index_path,
                           fix=f"list shards relative to {self.data_dir}, or {_RESHARD_HINT}")

    def __len__(self) -> int:
        return self.num_samples

    def _shard(self, k: int) -> _TarShard:
        shard = self._open.get(k)
        if shard is not None:
            self._open.move_to_end(k)
            return shard
        if not os.path.isfile(self.paths[k]):
            raise ShardsNotFoundError(
                f"shard {self.paths[k]} listed in {self.index_path} is missing; copy the whole "
                f"shard directory or {_RESHARD_HINT}"
            )
        shard = _TarShard(
            self.paths[k],
            int(self.lengths[k]),
            self.sample_tokens * self.dtype.itemsize,
            os.path.basename(self.index_path),
        )
        self._open[k] = shard
        while len(self._open) > self.max_open_shards:
            self._open.popitem(last=False)[1].close()
        return shard

    def read(self, sample_ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Read samples into an ``int64`` array ``[len(sample_ids), seq_length + 1]``."""
        ids = np.asarray(sample_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_samples):
            raise IndexError(
                f"sample ids must be in [0, {self.num_samples}), got {ids.min()}..{ids.max()}"
            )
        if out is None:
            out = np.empty((ids.size, self.sample_tokens), dtype=np.int64)
        shard_of = np.searchsorted(self.starts, ids, side="right") - 1
        local = ids - self.starts[shard_of]
        n = self.sample_tokens
        with self._lock:
            for row, (k, j) in enumerate(zip(shard_of.tolist(), local.tolist(), strict=True)):
                shard = self._shard(k)
                # The temporary view is dropped at once: an mmap with live views cannot close.
                out[row] = np.frombuffer(shard.mm, self.dtype, n, shard.data_offset(j))
        rows = out[: ids.size]
        if rows.size and rows.max() >= self.vocab_limit:
            row = int(np.argmax(rows.max(axis=1) >= self.vocab_limit))
            k, j = int(shard_of[row]), int(local[row])
            raise ShardCorruptError(
                f"{self.paths[k]}: sample {j} (sample id {int(ids[row])} of split "
                f"{self.split!r}) holds token id {int(rows[row].max())} >= the tokenizer's "
                f"vocab_size {self.vocab_limit}; the shard is corrupt: re-create it with "
                f"data_prep/shard.py (or restore it from the source copy)")
        return out

    def __getitem__(self, i: int) -> np.ndarray:
        """Sample ``i`` as ``int64`` ids of shape ``[seq_length + 1]``."""
        return self.read(np.asarray([i]))[0]

    def check_files(self) -> list[str]:
        """Problems with this split's shard files (exist, at least the size their sample
        count needs), one stat per shard and no reads: cheap at every start."""
        sample_bytes = self.sample_tokens * self.dtype.itemsize
        stride = _BLOCK + -(-sample_bytes // _BLOCK) * _BLOCK
        problems = []
        for path, n in zip(self.paths, self.lengths.tolist(), strict=True):
            try:
                size = os.stat(path).st_size
            except OSError:
                problems.append(f"shard {path} listed in {self.index_path} is missing")
                continue
            if size < n * stride + 2 * _BLOCK:
                problems.append(f"shard {path} has {size} bytes, fewer than its {n} samples "
                                f"need ({n * stride + 2 * _BLOCK}): truncated")
        return problems

    def verify(self) -> None:
        """Open every shard once, checking its sample count against the index."""
        for k in range(len(self.paths)):
            with self._lock:
                self._shard(k)

    def close(self) -> None:
        """Close all open shards."""
        with self._lock:
            while self._open:
                self._open.popitem()[1].close()

    def __enter__(self) -> TokenShardDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # mmaps and locks do not pickle (DataLoader workers, spawn): reopen lazily.
        state = self.__dict__.copy()
        state["_open"], state["_lock"] = OrderedDict(), None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def open_split(
    data_dir: str | os.PathLike[str],
    split: str = "train",
    *,
    seq_length: int,
    vocab_size: int,
    tokenizer_sha256: str | None = None,
    max_open_shards: int = 128,
) -> TokenShardDataset:
    """Load and check the manifest, then open ``split`` (the one call a trainer needs)."""
    manifest = load_manifest(data_dir)
    check_manifest(
        manifest,
        seq_length=seq_length,
        vocab_size=vocab_size,
        tokenizer_sha256=tokenizer_sha256,
        data_dir=data_dir,
    )
    return TokenShardDataset(data_dir, split, manifest=manifest, max_open_shards=max_open_shards)
