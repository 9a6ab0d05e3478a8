"""Frequency buckets for stratified perplexity: token id -> bucket, from train unigram counts.

Bucket 0 is ``unseen``: ids whose train count is 0 (including ids beyond the end of
``token_counts.npy``). Buckets ``1..N`` split the *seen* ids into ``N`` groups of
roughly equal train-token mass, rarest first.

Edges are a pure function of the counts (deterministic, no ties broken by id):

* ``T`` = total train tokens; for a count value ``c``, ``M(c)`` = mass of the ids whose
  count is *strictly below* ``c`` and ``m(c) = c * #{ids with count c}`` its own mass.
* Every id with count ``c`` goes to bucket ``1 + min(N - 1, floor(N * (M(c) + m(c)/2) / T))``,
  i.e. to the mass-quantile where the *middle* of its count group falls. Integer
  arithmetic, so no float rounding decides an edge.

Consequences: ids with equal counts always share a bucket; bucket count ranges never
overlap and increase with the bucket index; a single very frequent id (e.g. the most
common punctuation) that holds more than ``1/N`` of the mass leaves a neighbouring bucket
empty rather than being split. Empty buckets are reported with 0 tokens.

Worked example (tested): counts ``[0, 1, 1, 2, 4, 8]``, ``N = 2``, ``T = 16``: groups
``c=1`` (mid 1), ``c=2`` (mid 3), ``c=4`` (mid 6) -> ``floor(2*mid/16) = 0``; ``c=8``
(mid 12) -> 1. So id 0 is unseen, ids 1-4 are bucket 1, id 5 is bucket 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BucketSpec", "frequency_buckets"]


@dataclass(frozen=True)
class BucketSpec:
    """The bucket of every token id and a description of each bucket."""

    token_bucket: np.ndarray
    """int64 [vocab_size]: bucket index of each id (0 = unseen, 1..N rarest..most frequent)."""
    names: list[str]
    """``unseen``, ``b1``, ..., ``bN``."""
    min_count: list[int]
    """Smallest train count of an id in the bucket (0 for unseen or empty buckets)."""
    max_count: list[int]
    """Largest train count of an id in the bucket."""
    num_ids: list[int]
    """Vocabulary ids in the bucket."""
    train_tokens: list[int]
    """Train tokens whose id is in the bucket (the bucket's mass)."""

    @property
    def num_buckets(self) -> int:
        """Buckets including ``unseen``."""
        return len(self.names)

    def describe(self) -> list[dict]:
        """One JSON-ready dict per bucket."""
        total = max(1, sum(self.train_tokens))
        return [{"bucket": name, "min_train_count": lo, "max_train_count": hi, "num_ids": n,
                 "train_tokens": mass, "train_mass": mass / total}
                for name, lo, hi, n, mass in zip(self.names, self.min_count, self.max_count,
                                                 self.num_ids, self.train_tokens, strict=True)]


def frequency_buckets(token_counts: np.ndarray, num_buckets: int = 5,
                      vocab_size: int | None = None) -> BucketSpec:
    """Equal-train-mass frequency buckets (see the module docstring for the exact edges).

    Args:
        token_counts: int [V'] train counts per id (``token_counts.npy``).
        num_buckets: ``N`` >= 1, buckets of seen ids (``unseen`` comes on top).
        vocab_size: the model's vocabulary (default ``len(token_counts)``); ids past the
            end of ``token_counts`` count 0 (unseen).

    Raises:
        ValueError: ``num_buckets`` < 1, counts not 1-D, or a negative count.
    """
    counts = np.asarray(token_counts)
    if counts.ndim != 1:
        raise ValueError(f"`token_counts` must be 1-D, got shape {counts.shape}")
    if num_buckets < 1:
        raise ValueError(f"`num_buckets` must be >= 1, got {num_buckets}")
    counts = counts.astype(np.int64)
    if (counts < 0).any():
        raise ValueError("`token_counts` has negative entries; is it a token_counts.npy?")
    vocab = len(counts) if vocab_size is None else vocab_size
    full = np.zeros(vocab, dtype=np.int64)
    full[: min(vocab, len(counts))] = counts[:vocab]

    token_bucket = np.zeros(vocab, dtype=np.int64)
    seen = full > 0
    total = int(full.sum())
    if total:
        values, group_size = np.unique(full[seen], return_counts=True)  # ascending counts
        group_mass = [int(v) * int(n) for v, n in zip(values, group_size, strict=True)]
        below, group_bucket = 0, {}
        for v, mass in zip(values, group_mass, strict=True):
            # floor(N * (below + mass/2) / T) in integers: floor(N * (2*below + mass) / (2T)).
            q = (num_buckets * (2 * below + mass)) // (2 * total)
            group_bucket[int(v)] = 1 + min(num_buckets - 1, q)
            below += mass
        ids = np.nonzero(seen)[0]
        token_bucket[ids] = [group_bucket[int(c)] for c in full[ids]]

    names = ["unseen"] + [f"b{k}" for k in range(1, num_buckets + 1)]
    lo, hi, n_ids, mass = [], [], [], []
    for k in range(num_buckets + 1):
        in_k = token_bucket == k
        c = full[in_k]
        lo.append(int(c.min()) if c.size else 0)
        hi.append(int(c.max()) if c.size else 0)
        n_ids.append(int(in_k.sum()))
        mass.append(int(c.sum()))
    return BucketSpec(token_bucket=token_bucket, names=names, min_count=lo, max_count=hi,
                      num_ids=n_ids, train_tokens=mass)
