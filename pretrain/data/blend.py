"""Training on a weighted mixture of shard directories.

``data.path`` takes one shard directory, or several with weights, in any of these forms::

    data.path: /data/pile                                    # one directory, no mixture
    data.path: "0.7 /data/pile 0.3 /data/code"               # Megatron-LM's --data-path
    data.path: [0.7, /data/pile, 0.3, /data/code]            # the same as a YAML list
    data.path:                                               # named sources
      - {path: /data/pile, weight: 0.7}
      - {path: /data/code, weight: 0.3, name: code}

Weights are normalised. Every source must share the tokenizer and ``seq_length``.

**The mixture** is a pure function of ``(seed, weights, source sizes, stream position)``,
so it is exact on resume and on a DP change, and needs no index in memory:

* Stream positions are cut into blocks of ``MIX_BLOCK`` (8192). Every block holds exactly
  ``n_s`` positions of source ``s`` (``n_s``: largest-remainder rounding of
  ``weight_s * 8192``), so the realised share never drifts from its weight by more than
  1/8192 at block ends, and by the sampling spread of one partial block in between.
* Inside block ``k``, position ``j`` maps through the keyed bijection of
  ``pretrain/data/permutation.py`` (keyed by the mixing seed and ``k``) to ``q``; ``q`` in
  ``[start_s, start_s + n_s)`` means source ``s``: the sources are interleaved at random
  within a block. The ``r``-th position of source ``s`` in block ``k`` is position
  ``k * n_s + r`` of that source's own stream, so each source's stream keeps its order.
* Each source then has its own epochs: its positions go through its own ``SampleOrder``
  (seeded per source), so a small source repeats (epoch 2, 3, ...) while a large one is
  still in its first epoch; each is reshuffled every epoch.

Validation runs on each source's validation split; the blended validation loss is the
weight-averaged per-source loss.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from pretrain.config import ConfigError
from pretrain.config.data_path import MIX_BLOCK, DataSource, parse_data_path
from pretrain.data.permutation import KeyedPermutation, splitmix64
from pretrain.data.sampler import SampleOrder
from pretrain.data.shards import DataMismatchError, TokenShardDataset, open_split

__all__ = [
    "MIX_BLOCK",
    "BlendedDataset",
    "DataSource",
    "MixtureOrder",
    "block_counts",
    "describe_mixture",
    "mixture_shares",
    "open_data",
    "parse_data_path",
    "sample_order",
]

MIX_ALGORITHM = "blocked-keyed-mixture-v1"


def block_counts(weights: Sequence[float], block: int = MIX_BLOCK) -> np.ndarray:
    """Positions of each source per block: largest-remainder rounding of ``w * block``
    (ties to the earlier source), summing to ``block``."""
    exact = np.asarray(weights, dtype=np.float64) * block / float(np.sum(weights))
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: block - int(counts.sum())]] += 1
    return counts


def _derived_seed(seed: int, label: int) -> int:
    return int(splitmix64(splitmix64(np.array([seed], dtype=np.uint64)) ^ np.uint64(label))[0]
               >> np.uint64(1))


class MixtureOrder:
    """Stream position -> (source, sample id) for a mixture; see the module docstring.

    Ids are *global*: source ``s``'s sample ``i`` is ``offsets[s] + i`` (the id space of
    :class:`BlendedDataset`). Drop-in for ``pretrain.data.sampler.SampleOrder``.

    Args:
        sizes: Samples per source (its split's ``len``).
        weights: Normalised or not; at least one position per block each.
        seed: The run's ``data.shuffle_seed``.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], seed: int,
                 *, block: int = MIX_BLOCK) -> None:
        self.sizes = [int(n) for n in sizes]
        self.seed, self.block = int(seed), int(block)
        self.counts = block_counts(weights, block)
        if (self.counts == 0).any():
            raise ConfigError(f"a source's weight rounds to 0 of {block} positions per block")
        self.starts = np.concatenate([[0], np.cumsum(self.counts)])
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self._mix = KeyedPermutation(block, _derived_seed(seed, 0))
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.orders = [SampleOrder(n, _derived_seed(seed, s + 1))
                       for s, n in enumerate(self.sizes)]

    def _block(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Source of each position of block ``k``, and its rank among that source's
        positions in the block (so each source's own stream keeps its order)."""
        cached = self._cache.get(k)
        if cached is None:
            q = self._mix.apply(k, np.arange(self.block, dtype=np.int64))
            src = np.searchsorted(self.starts, q, side="right") - 1
            rank = np.empty(self.block, dtype=np.int64)
            for s in range(len(self.sizes)):
                mask = src == s
                rank[mask] = np.arange(int(mask.sum()), dtype=np.int64)
            cached = (src, rank)
            self._cache[k] = cached
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return cached

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(source, position in that source's own stream)`` of stream ``positions``."""
        positions = np.asarray(positions, dtype=np.int64)
        k, j = np.divmod(positions, self.block)
        src, local = np.empty_like(j), np.empty_like(j)
        for kk in np.unique(k):
            mask = k == kk
            block_src, block_rank = self._block(int(kk))
            src[mask] = block_src[j[mask]]
            local[mask] = kk * self.counts[src[mask]] + block_rank[j[mask]]
        return src, local

    def sample_ids(self, start: int, stop: int) -> np.ndarray:
        """Global sample ids at stream positions ``[start, stop)``."""
        if start < 0 or stop < start:
            raise ValueError(f"invalid stream range [{start}, {stop})")
        src, pos = self.locate(np.arange(start, stop, dtype=np.int64))
        out = np.empty(stop - start, dtype=np.int64)
        for s in np.unique(src):
            mask = src == s
            out[mask] = self.offsets[s] + self.orders[s].ids_at(pos[mask])
        return out

    def positions_per_source(self, upto: int) -> np.ndarray:
        """How many of stream positions ``[0, upto)`` each source received."""
        full, rest = divmod(int(upto), self.block)
        counts = full * self.counts
        if rest:
            src, _ = self._block(full)
            counts = counts + np.bincount(src[:rest], minlength=len(self.sizes))
        return counts

    @property
    def fingerprint(self) -> str:
        """Names the mixture's order: algorithm, block, counts, sizes, seed, first ids."""
        head = self.sample_ids(0, 128).tolist()
        text = (f"{MIX_ALGORITHM}:{self.block}:{self.counts.tolist()}:{self.sizes}:{self.seed}:"
                + ",".join(map(str, head)))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class BlendedDataset:
    """Several splits read as one: global id ``offsets[s] + i`` is sample ``i`` of source
    ``s``. Satisfies ``pretrain.data.sampler.SampleSource``; ``manifest`` is the blend's view
    (``fingerprint`` over every source's fingerprint and weight, the shared tokenizer).

    Raises:
        DataMismatchError: two sources with different tokenizers or seq_lengths (both named).
    """

    def __init__(self, sources: list[DataSource], datasets: list[Any]) -> None:
        first = datasets[0].manifest
        for source, ds in zip(sources[1:], datasets[1:], strict=True):
            m = ds.manifest
            for key, a, b in (("tokenizer", first["tokenizer"]["sha256"],
                               m["tokenizer"]["sha256"]),
                              ("seq_length", first["seq_length"], m["seq_length"])):
                if a != b:
                    raise DataMismatchError(
                        f"data.path mixes sources with different {key}: {sources[0].path} has "
                        f"{key} {a}, {source.path} has {b}; every source of a mixture must be "
                        f"sharded with the same tokenizer and --seq-length")
        self.sources, self.datasets = sources, datasets
        self.eod_id = datasets[0].eod_id
        self.sample_tokens = datasets[0].sample_tokens
        self.split = datasets[0].split
        self.offsets = np.concatenate([[0], np.cumsum([len(d) for d in datasets])]).astype(
            np.int64)
        parts = [f"{s.name}:{s.weight!r}:{d.manifest['fingerprint']}"
                 for s, d in zip(sources, datasets, strict=True)]
        self.manifest = {
            "fingerprint": hashlib.sha256("\n".join(parts).encode()).hexdigest(),
            "tokenizer": first["tokenizer"],
            "seq_length": first["seq_length"],
            "sources": [{"name": s.name, "path": s.path, "weight": s.weight,
                         "fingerprint": d.manifest["fingerprint"], "samples": len(d)}
                        for s, d in zip(sources, datasets, strict=True)],
        }

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Blocks of global ``ids`` in their order (see ``TokenShardDataset.read``)."""
        ids = np.asarray(ids, dtype=np.int64)
        if out is None:
            out = np.empty((len(ids), self.sample_tokens), dtype=np.int64)
        src = np.searchsorted(self.offsets, ids, side="right") - 1
        for s in np.unique(src):
            rows = np.flatnonzero(src == s)
            out[rows] = self.datasets[s].read(ids[rows] - self.offsets[s])
        return out

    def check_files(self) -> list[str]:
        return [p for d in self.datasets for p in d.check_files()]

    def close(self) -> None:
        for d in self.datasets:
            d.close()


def open_data(path: str | Sequence[Any], split: str, *, seq_length: int,
              vocab_size: int) -> TokenShardDataset | BlendedDataset:
    """``split`` of ``data.path``: one directory's dataset, or the blend of several.

    Raises:
        ConfigError: an empty or malformed ``data.path``.
        ShardsNotFoundError, DataMismatchError, ShardIndexError: as ``open_split``, naming
            the source; and sources that do not share tokenizer and seq_length.
    """
    sources = parse_data_path(path)
    if not sources:
        raise ConfigError("data.path is empty; give the shard directory written by "
                          "data_prep/shard.py (or a weighted list of them)")
    if len(sources) == 1:
        return open_split(sources[0].path, split, seq_length=seq_length, vocab_size=vocab_size)
    datasets: list[TokenShardDataset] = []
    try:
        for source in sources:
            datasets.append(open_split(source.path, split, seq_length=seq_length,
                                       vocab_size=vocab_size))
        return BlendedDataset(sources, datasets)
    except BaseException:
        for d in datasets:
            d.close()
        raise


def sample_order(dataset: TokenShardDataset | BlendedDataset,
                 seed: int) -> SampleOrder | MixtureOrder:
    """The training order of ``dataset``: its own epochs, or the mixture's."""
    if isinstance(dataset, BlendedDataset):
        return MixtureOrder([len(d) for d in dataset.datasets],
                            [s.weight for s in dataset.sources], seed)
    return SampleOrder(len(dataset), seed)


def mixture_shares(dataset: Any, order: Any, upto: int) -> dict[str, tuple[float, float, float]]:
    """``name -> (weight, realised share, epochs)`` over stream positions ``[0, upto)``;
    empty when ``dataset`` is not a mixture."""
    if not isinstance(dataset, BlendedDataset):
        return {}
    counts = order.positions_per_source(upto)
    shares = counts / max(int(upto), 1)
    epochs = counts / np.asarray(order.sizes, dtype=np.float64)
    return {s.name: (s.weight, float(share), float(e))
            for s, share, e in zip(dataset.sources, shares, epochs, strict=True)}


def describe_mixture(shares: dict[str, tuple[float, float, float]]) -> str:
    """``pile 70.01 % (weight 70.00 %, 0.31 epochs), code ...`` for a log line."""
    return ", ".join(f"{name} {100 * share:.2f} % (weight {100 * weight:.2f} %, "
                     f"{epochs:.3g} epochs)" for name, (weight, share, epochs) in shares.items())
