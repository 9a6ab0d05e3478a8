"""Sample order and batching: which samples every rank reads at every step, as tensors.

``SampleOrder``/``BatchLayout`` decide the order; ``TrainBatchIterator`` and
``val_batches`` read it through a ``SampleSource`` (``pretrain.data.shards.TokenShardDataset``)
and yield megatron-core GPT batches (``make_batch``). This module does not import
``pretrain.data.shards``: the data layer reads shards, this one decides what to read.

Everything here is a pure function of integers, so a run can be replayed, resumed or
re-sharded across a different number of data-parallel (DP) ranks and still read the
same samples in the same order.

Vocabulary used throughout:

* **sample id** -- index of a sample inside a split, ``0 <= id < num_samples``
  (the order of ``<split>.wids.json``; see ``data_prep/FORMAT.md``).
* **stream position** -- index into the infinite stream made by concatenating
  epoch 0, epoch 1, ...; epoch ``e`` is a permutation of all sample ids keyed by
  ``(seed, e)`` (``pretrain/data/permutation.py``: integer arithmetic, no numpy RNG stream,
  no index in memory). Position ``p`` holds sample ``perm(seed, p // N)[p % N]``.
* **consumed_samples** -- the number of stream positions consumed by finished global
  batches. It is the whole data position of a run (saved in checkpoints).

Global batch ``g`` covers positions ``[g * GB, (g + 1) * GB)``. DP rank ``r`` of ``D``
takes the contiguous slice ``[r * GB / D, (r + 1) * GB / D)`` of it and cuts that into
``accum = GB / (MB * D)`` micro-batches of ``MB`` samples. Tensor-parallel peers share
a DP rank and therefore read identical samples. Because the global batch does not
depend on ``D``, changing ``D`` (with the same ``GB``) continues the same global sample
sequence; only the grouping into micro-batches changes.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from pretrain.data.permutation import KeyedPermutation, order_fingerprint, splitmix64

__all__ = [
    "BatchLayout",
    "SampleOrder",
    "SampleSource",
    "TrainBatchIterator",
    "epoch_permutation",
    "global_batch_sample_ids",
    "make_batch",
    "num_val_micro_batches",
    "val_batches",
    "val_subset_ids",
]


class SampleSource(Protocol):
    """What the batchers read: ``pretrain.data.shards.TokenShardDataset`` (no import, no cycle)."""

    eod_id: int
    sample_tokens: int

    def __len__(self) -> int: ...

    def read(self, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray: ...


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The whole permutation of ``range(num_samples)`` used for ``epoch`` (int64).

    For inspection and tests; training maps only the positions it reads
    (:class:`SampleOrder`). A pure function of the arguments (``pretrain/data/permutation.py``).
    """
    return KeyedPermutation(num_samples, seed).apply(epoch, np.arange(num_samples))


class SampleOrder:
    """Maps stream positions to sample ids for one split and seed.

    Position ``p`` holds ``perm(seed, p // N)[p % N]`` with ``perm`` the keyed bijection
    of ``pretrain/data/permutation.py``: no per-epoch index is built. Ids are computed for
    blocks of ``block`` consecutive positions at once (numpy's per-call overhead would
    otherwise dominate micro-batches of a few samples) and the last two blocks are kept:
    at most ``2 * block * 8`` bytes (1 MiB by default), whatever the corpus size.

    Args:
        num_samples: Number of samples in the split.
        seed: Data seed of the run.
        block: Positions computed together.
    """

    def __init__(self, num_samples: int, seed: int, *, block: int = 65536) -> None:
        self._perm = KeyedPermutation(num_samples, seed)
        self.num_samples = self._perm.num_samples
        self.seed = self._perm.seed
        self._block = max(1, block)
        self._blocks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    @property
    def fingerprint(self) -> str:
        """:func:`pretrain.data.permutation.order_fingerprint` of this split and seed."""
        return order_fingerprint(self.num_samples, self.seed)

    def _ids_of_block(self, epoch: int, index: int) -> np.ndarray:
        key = (epoch, index)
        ids = self._blocks.get(key)
        if ids is None:
            start = index * self._block
            stop = min(start + self._block, self.num_samples)
            ids = self._perm.apply(epoch, np.arange(start, stop, dtype=np.int64))
            self._blocks[key] = ids
            while len(self._blocks) > 2:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return ids

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        """Sample ids at arbitrary stream ``positions`` (a mixture's, scattered), int64."""
        positions = np.asarray(positions, dtype=np.int64)
        epoch, offset = np.divmod(positions, self.num_samples)
        out = np.empty_like(positions)
        for e in np.unique(epoch):
            mask = epoch == e
            out[mask] = self._perm.apply(int(e), offset[mask])
        return out

    def sample_ids(self, start: int, stop: int) -> np.ndarray:
        """Sample ids at stream positions ``[start, stop)`` as an ``int64`` array."""
        if start < 0 or stop < start:
            raise ValueError(f"invalid stream range [{start}, {stop})")
        out = np.empty(stop - start, dtype=np.int64)
        pos = start
        # A range may straddle blocks and epoch boundaries (when GB does not divide N):
        # fill it piecewise.
        while pos < stop:
            epoch, offset = divmod(pos, self.num_samples)
            index, inner = divmod(offset, self._block)
            ids = self._ids_of_block(epoch, index)
            take = min(stop - pos, len(ids) - inner)
            out[pos - start : pos - start + take] = ids[inner : inner + take]
            pos += take
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLayout:
    """How a global batch is split over DP ranks and gradient-accumulation steps.

    ``global_batch_size = micro_batch_size * dp_size * accum_steps``.
    """

    global_batch_size: int
    """Samples per optimizer step, summed over all DP ranks (GB)."""
    micro_batch_size: int
    """Samples per forward/backward pass on one rank (MB)."""
    dp_size: int = 1
    """Number of data-parallel ranks (D); TP peers count once."""

    def __post_init__(self) -> None:
        for name in ("global_batch_size", "micro_batch_size", "dp_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        per_pass = self.micro_batch_size * self.dp_size
        if self.global_batch_size % per_pass:
            # Suggest the nearest valid global batch sizes so the fix is one edit.
            lower = max(per_pass, self.global_batch_size // per_pass * per_pass)
            raise ValueError(
                f"global_batch_size={self.global_batch_size} is not a multiple of "
                f"micro_batch_size={self.micro_batch_size} x dp_size={self.dp_size} = {per_pass}; "
                f"use global_batch_size={lower} or {lower + per_pass}, or change micro_batch_size"
            )

    @property
    def accum_steps(self) -> int:
        """Micro-batches per rank per optimizer step (gradient accumulation)."""
        return self.global_batch_size // (self.micro_batch_size * self.dp_size)

    @property
    def rank_batch_size(self) -> int:
        """Samples per rank per optimizer step (GB / D)."""
        return self.global_batch_size // self.dp_size

    def micro_batch_range(self, batch_start: int, dp_rank: int, micro_step: int) -> tuple[int, int]:
        """Stream positions ``[start, stop)`` of one micro-batch.

        Args:
            batch_start: Stream position where the global batch starts; for a run that
                always used this global batch size it is ``step * global_batch_size``
                (in general: ``consumed_samples`` before the step).
            dp_rank: This rank's index in the DP group, ``0 <= dp_rank < dp_size``.
            micro_step: Gradient-accumulation index, ``0 <= micro_step < accum_steps``.
        """
        if not 0 <= dp_rank < self.dp_size:
            raise ValueError(f"`dp_rank` must be in [0, {self.dp_size}), got {dp_rank}")
        if not 0 <= micro_step < self.accum_steps:
            raise ValueError(f"`micro_step` must be in [0, {self.accum_steps}), got {micro_step}")
        start = batch_start + dp_rank * self.rank_batch_size + micro_step * self.micro_batch_size
        return start, start + self.micro_batch_size


def global_batch_sample_ids(
    step: int, *, num_samples: int, global_batch_size: int, seed: int
) -> np.ndarray:
    """Sample ids of global batch ``step`` in rank-major order (rank 0's slice first).

    This is what every run with this ``(seed, global_batch_size)`` reads at ``step``,
    whatever its DP size; tests compare runs with it.
    """
    order = SampleOrder(num_samples, seed)
    start = step * global_batch_size
    return order.sample_ids(start, start + global_batch_size)


def make_batch(
    blocks: np.ndarray,
    sample_ids: np.ndarray,
    *,
    eod_id: int,
    eod_mask_loss: bool = False,
    valid: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Turn ``[mb, s + 1]`` blocks into a megatron-core GPT batch.

    ``loss_mask`` is 1.0 everywhere by default: documents are packed back to back with
    an EOD between them, and learning to predict EOD (and the first token after it) is
    what Megatron and GPT-2 do by default. ``eod_mask_loss=True`` zeroes the positions
    whose *input* token is EOD (Megatron's ``--eod-mask-loss``). ``position_ids`` run
    0..s-1 per row, not reset at EOD (Megatron's default; RoPE models ignore them).
    Rows where ``valid`` is False (validation padding) get ``loss_mask`` 0.
    """
    block = torch.from_numpy(np.ascontiguousarray(blocks, dtype=np.int64))
    mb, s = block.shape[0], block.shape[1] - 1
    tokens = block[:, :-1].contiguous()
    labels = block[:, 1:].contiguous()
    loss_mask = torch.ones((mb, s), dtype=torch.float32)
    if eod_mask_loss:
        loss_mask[tokens == eod_id] = 0.0
    if valid is not None:
        loss_mask[torch.from_numpy(~np.asarray(valid, dtype=bool))] = 0.0
    position_ids = torch.arange(s, dtype=torch.int64).repeat(mb, 1)
    return {
        "tokens": tokens,
        "labels": labels,
        "loss_mask": loss_mask,
        "position_ids": position_ids,
        "sample_ids": torch.from_numpy(np.asarray(sample_ids, dtype=np.int64).copy()),
    }


class TrainBatchIterator:
    """Endless micro-batches of one DP rank, starting at ``consumed_samples``.

    Yields ``layout.accum_steps`` micro-batches per optimizer step, in order; the
    trainer calls ``next()`` that many times per step (as DeepSpeed's
    ``train_batch(data_iter)`` and Megatron's schedules do). After ``k`` steps the
    run's data position is ``consumed_samples + k * global_batch_size``; build a new
    iterator from that number to resume exactly, with any ``dp_size`` that divides the
    same global batch.

    Args:
        dataset: The train split.
        layout: Global/micro batch sizes and DP size.
        dp_rank: This rank's DP index (TP peers pass the same value).
        seed: Data seed; with ``epoch`` it fixes the order (see ``pretrain/data/sampler.py``).
        consumed_samples: Stream position to start at.
        order: Stream position -> sample id (default ``SampleOrder(len(dataset), seed)``;
            a mixture passes ``pretrain.data.blend.MixtureOrder``).
        prefetch: Micro-batches read ahead by a background thread so reading overlaps
            compute; 0 reads synchronously in ``next()``.
        eod_mask_loss: See :func:`make_batch`.
    """

    def __init__(
        self,
        dataset: SampleSource,
        *,
        layout: BatchLayout,
        dp_rank: int,
        seed: int,
        consumed_samples: int = 0,
        order: Any = None,
        prefetch: int = 4,
        eod_mask_loss: bool = False,
    ) -> None:
        if consumed_samples < 0:
            raise ValueError(f"`consumed_samples` must be >= 0, got {consumed_samples}")
        if not 0 <= dp_rank < layout.dp_size:
            raise ValueError(f"`dp_rank` must be in [0, {layout.dp_size}), got {dp_rank}")
        self.dataset = dataset
        self.layout = layout
        self.dp_rank = dp_rank
        self.consumed_samples = consumed_samples
        self.eod_mask_loss = eod_mask_loss
        self.order = order if order is not None else SampleOrder(len(dataset), seed)
        self._stop = threading.Event()
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        self._gen = self._produce()
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(
                target=self._fill, name="lev-data-prefetch", daemon=True
            )
            self._thread.start()

    def _produce(self) -> Iterator[dict[str, torch.Tensor]]:
        layout, batch_start = self.layout, self.consumed_samples
        while True:
            for micro in range(layout.accum_steps):
                start, stop = layout.micro_batch_range(batch_start, self.dp_rank, micro)
                ids = self.order.sample_ids(start, stop)
                yield make_batch(
                    self.dataset.read(ids),
                    ids,
                    eod_id=self.dataset.eod_id,
                    eod_mask_loss=self.eod_mask_loss,
                )
            batch_start += layout.global_batch_size

    def _fill(self) -> None:
        assert self._queue is not None
        try:
            for item in self._gen:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, who re-raises it
            self._put(exc)

    def _put(self, item: Any) -> bool:
        """Block until ``item`` is queued (True) or the iterator is closed (False)."""
        assert self._queue is not None
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> TrainBatchIterator:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._queue is None:
            return next(self._gen)
        if self._stop.is_set():
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        """Stop the prefetch thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a producer waiting on a full queue
                    assert self._queue is not None
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
            self._thread = None

    def __enter__(self) -> TrainBatchIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def num_val_micro_batches(num_samples: int, micro_batch_size: int, dp_size: int) -> int:
    """Micro-batches every DP rank yields in one validation pass (equal on all ranks)."""
    return -(-num_samples // (micro_batch_size * dp_size))


def val_subset_ids(num_samples: int, max_samples: int | None) -> np.ndarray:
    """The validation sample ids a pass over at most ``max_samples`` samples reads.

    All of them (``0..N-1``) when ``max_samples`` is ``None`` or ``>= N``. Otherwise a
    fixed pseudo-random subset drawn from the whole split (every shard), never a prefix:
    the ``max_samples`` ids with the smallest SplitMix64 hash, in increasing order. It
    depends only on ``(N, max_samples)`` -- not on the run's seed, the numpy version or the
    rank count -- so every run and every evaluation of a comparison reads the same samples.
    """
    if max_samples is None or max_samples >= num_samples:
        return np.arange(num_samples, dtype=np.int64)
    keys = splitmix64(np.arange(num_samples, dtype=np.uint64))
    return np.sort(np.argsort(keys, kind="stable")[:max_samples]).astype(np.int64)


def val_batches(
    dataset: SampleSource,
    *,
    micro_batch_size: int,
    dp_rank: int = 0,
    dp_size: int = 1,
    max_samples: int | None = None,
    eod_mask_loss: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """One deterministic pass over the validation split (or its fixed subset).

    The samples are :func:`val_subset_ids` (all of them unless ``max_samples`` is given).
    Position ``p`` of that list is read by micro-batch ``p // (D * MB)``: micro-batch
    ``b`` of all ranks together covers positions ``[b * D * MB, (b + 1) * D * MB)`` and
    rank ``r`` takes the ``r``-th ``MB`` of them, so across ranks every sample is visited
    exactly once. The tail is padded (sample id -1, ``loss_mask`` 0) so every rank runs
    the same number of forward passes -- ranks that skip one would hang ZeRO-3's
    parameter all-gathers.
    """
    if not 0 <= dp_rank < dp_size:
        raise ValueError(f"`dp_rank` must be in [0, {dp_size}), got {dp_rank}")
    if micro_batch_size <= 0:
        raise ValueError(f"`micro_batch_size` must be > 0, got {micro_batch_size}")
    subset = val_subset_ids(len(dataset), max_samples)
    n = len(subset)
    for b in range(num_val_micro_batches(n, micro_batch_size, dp_size)):
        start = (b * dp_size + dp_rank) * micro_batch_size
        positions = np.arange(start, start + micro_batch_size, dtype=np.int64)
        valid = positions < n  # valid rows form a prefix: positions increase
        ids = subset[positions[valid]]
        # Padding rows hold token id 0 (always in the vocabulary) and are masked out.
        blocks = np.zeros((micro_batch_size, dataset.sample_tokens), dtype=np.int64)
        if valid.any():
            dataset.read(ids, out=blocks[: int(valid.sum())])
        sample_ids = np.full(micro_batch_size, -1, dtype=np.int64)
        sample_ids[: len(ids)] = ids
        yield make_batch(
            blocks,
            sample_ids,
            eod_id=dataset.eod_id,
            eod_mask_loss=eod_mask_loss,
            valid=valid,
        )
