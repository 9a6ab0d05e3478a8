"""Specification of pretrain/data/shards.py and pretrain/data/sampler.py on real tar shards."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrain.data.sampler import (
    BatchLayout,
    SampleOrder,
    TrainBatchIterator,
    epoch_permutation,
    global_batch_sample_ids,
    num_val_micro_batches,
    val_batches,
    val_subset_ids,
)
from pretrain.data.shards import (
    DataMismatchError,
    ShardCorruptError,
    ShardIndexError,
    ShardsNotFoundError,
    TokenShardDataset,
    check_manifest,
    load_manifest,
    open_split,
)

SEQ = 32


@pytest.fixture
def train(shard_dir: Path) -> TokenShardDataset:
    with open_split(shard_dir, "train", seq_length=SEQ, vocab_size=512) as ds:
        yield ds


def _run(ds, *, gb, mb, dp, rank, steps, consumed=0, seed=7, prefetch=0):
    """Micro-batches of `steps` optimizer steps on one rank."""
    layout = BatchLayout(global_batch_size=gb, micro_batch_size=mb, dp_size=dp)
    with TrainBatchIterator(
        ds, layout=layout, dp_rank=rank, seed=seed, consumed_samples=consumed, prefetch=prefetch
    ) as it:
        return [next(it) for _ in range(steps * layout.accum_steps)]


def _step_ids(batches, accum):
    """Per optimizer step, the sample ids this rank read, in order."""
    ids = [b["sample_ids"].numpy() for b in batches]
    return [np.concatenate(ids[i : i + accum]) for i in range(0, len(ids), accum)]


def test_order_is_a_pure_function_of_seed_epoch_and_position():
    a, b = SampleOrder(100, seed=3), SampleOrder(100, seed=3)
    assert np.array_equal(a.sample_ids(250, 330), b.sample_ids(250, 330))
    # Position p of the stream is permutation(seed, p // N)[p % N], nothing else.
    assert a.sample_ids(250, 251)[0] == epoch_permutation(100, 3, 2)[50]
    assert not np.array_equal(epoch_permutation(100, 3, 0), epoch_permutation(100, 4, 0))


def test_dp_slices_partition_the_global_batch(train):
    gb, mb, dp = 16, 2, 4
    per_rank = [_step_ids(_run(train, gb=gb, mb=mb, dp=dp, rank=r, steps=3), 2) for r in range(dp)]
    for step in range(3):
        together = np.concatenate([per_rank[r][step] for r in range(dp)])
        expected = global_batch_sample_ids(
            step, num_samples=len(train), global_batch_size=gb, seed=7
        )
        assert np.array_equal(together, expected)
        assert len(set(together.tolist())) == gb  # disjoint slices


def test_tp_peers_with_the_same_dp_rank_read_identical_samples(train):
    a = _run(train, gb=8, mb=2, dp=2, rank=1, steps=2)
    b = _run(train, gb=8, mb=2, dp=2, rank=1, steps=2, prefetch=2)
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_resume_from_consumed_samples_continues_identically(train):
    gb = 12
    straight = _run(train, gb=gb, mb=3, dp=2, rank=1, steps=6)
    first = _run(train, gb=gb, mb=3, dp=2, rank=1, steps=3)
    resumed = _run(train, gb=gb, mb=3, dp=2, rank=1, steps=3, consumed=3 * gb)
    for x, y in zip(straight, first + resumed, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_dp2_checkpoint_resumed_on_dp1_reads_the_same_global_sample_sequence(train):
    gb, steps = 8, 4
    dp2 = [_step_ids(_run(train, gb=gb, mb=2, dp=2, rank=r, steps=steps), 2) for r in range(2)]
    uninterrupted = [np.concatenate([dp2[0][s], dp2[1][s]]) for s in range(steps)]
    # Steps 0-1 on DP=2, checkpoint at consumed_samples = 2 * gb, steps 2-3 on DP=1.
    resumed = _step_ids(_run(train, gb=gb, mb=2, dp=1, rank=0, steps=2, consumed=2 * gb), 4)
    for step in (2, 3):
        assert np.array_equal(uninterrupted[step], resumed[step - 2])


def test_each_epoch_covers_every_sample_once_and_is_reshuffled(train):
    n = len(train)
    order = SampleOrder(n, seed=7)
    epoch0, epoch1 = order.sample_ids(0, n), order.sample_ids(n, 2 * n)
    assert np.array_equal(np.sort(epoch0), np.arange(n))
    assert np.array_equal(np.sort(epoch1), np.arange(n))
    assert not np.array_equal(epoch0, epoch1)
    # A global batch that straddles the boundary takes the end of epoch 0, then epoch 1.
    gb = 64
    step = n // gb
    ids = global_batch_sample_ids(step, num_samples=n, global_batch_size=gb, seed=7)
    cut = n - step * gb
    assert np.array_equal(ids[:cut], epoch0[step * gb :])
    assert np.array_equal(ids[cut:], epoch1[: gb - cut])


def test_wrong_nsamples_in_shard_index_is_a_clear_error(shard_copy):
    path = shard_copy / "train.wids.json"
    index = json.loads(path.read_text())
    # Move one sample between two shards: the split total still matches the manifest.
    first = index["shardlist"][0]
    true_count, name = first["nsamples"], first["url"].split("/")[-1]
    first["nsamples"] += 1
    index["shardlist"][1]["nsamples"] -= 1
    path.write_text(json.dumps(index))
    message = (
        rf"nsamples mismatch: .*{re.escape(name)} holds {true_count} samples but "
        rf"train\.wids\.json says nsamples={true_count + 1}"
    )
    with TokenShardDataset(shard_copy, "train") as ds:
        with pytest.raises(ShardIndexError, match=message):
            ds.read(np.arange(0, 5))


def test_index_total_disagreeing_with_manifest_is_a_clear_error(shard_copy):
    path = shard_copy / "train.wids.json"
    index = json.loads(path.read_text())
    index["shardlist"][-1]["nsamples"] += 1
    path.write_text(json.dumps(index))
    with pytest.raises(
        ShardIndexError,
        match=r"train\.wids\.json sums to \d+ samples but manifest\.json says splits\.train\.samples=",
    ):
        TokenShardDataset(shard_copy, "train")


def test_missing_manifest_names_the_path_and_the_shard_command(tmp_path):
    with pytest.raises(
        ShardsNotFoundError,
        match=r"manifest not found: .*manifest\.json; run `python data_prep/shard\.py",
    ):
        load_manifest(tmp_path)


def test_seq_length_mismatch_is_refused(shard_dir):
    manifest = load_manifest(shard_dir)
    with pytest.raises(
        DataMismatchError,
        match=r"seq_length mismatch: .* seq_length=32 but the config has seq_length=64; .*--seq-length 64",
    ):
        check_manifest(manifest, seq_length=64, vocab_size=512, data_dir=shard_dir)


def test_model_vocab_smaller_than_tokenizer_vocab_is_refused(shard_dir):
    manifest = load_manifest(shard_dir)
    with pytest.raises(
        DataMismatchError,
        match=r"vocab_size mismatch: the model's padded vocab_size=256 is smaller than the tokenizer's vocab_size=384",
    ):
        check_manifest(manifest, seq_length=SEQ, vocab_size=256, data_dir=shard_dir)
    check_manifest(manifest, seq_length=SEQ, vocab_size=384, data_dir=shard_dir)  # equal is fine


def test_tokenizer_sha256_mismatch_is_refused(shard_dir):
    manifest = load_manifest(shard_dir)
    theirs = manifest["tokenizer"]["sha256"]
    with pytest.raises(
        DataMismatchError, match=rf"tokenizer sha256 mismatch: .*sha256={theirs} .* sha256=beef"
    ):
        check_manifest(
            manifest, seq_length=SEQ, vocab_size=512, tokenizer_sha256="beef", data_dir=shard_dir
        )
    check_manifest(
        manifest, seq_length=SEQ, vocab_size=512, tokenizer_sha256=theirs, data_dir=shard_dir
    )


def test_global_batch_not_divisible_by_micro_batch_times_dp_names_the_fix():
    with pytest.raises(
        ValueError,
        match=r"global_batch_size=10 is not a multiple of .* = 4; use global_batch_size=8 or 12",
    ):
        BatchLayout(global_batch_size=10, micro_batch_size=2, dp_size=2)


def test_val_iterator_visits_every_sample_exactly_once_across_dp_ranks(shard_dir):
    mb, dp = 4, 3
    with open_split(shard_dir, "val", seq_length=SEQ, vocab_size=512) as val:
        runs = [
            list(val_batches(val, micro_batch_size=mb, dp_rank=r, dp_size=dp)) for r in range(dp)
        ]
        n = len(val)
    # Every rank runs the same number of forward passes (ZeRO-3 needs all ranks).
    assert {len(r) for r in runs} == {num_val_micro_batches(n, mb, dp)}
    seen = []
    for rank_batches in runs:
        for b in rank_batches:
            real = b["sample_ids"] >= 0
            assert torch.all(b["loss_mask"][~real] == 0) and torch.all(b["loss_mask"][real] == 1)
            seen += b["sample_ids"][real].tolist()
    assert sorted(seen) == list(range(n))


def test_labels_are_tokens_shifted_by_one_and_match_the_tar_bytes(train, shard_dir):
    batch = _run(train, gb=4, mb=4, dp=1, rank=0, steps=1)[0]
    assert batch["tokens"].shape == batch["labels"].shape == (4, SEQ)
    assert batch["tokens"].dtype == batch["labels"].dtype == torch.int64
    assert torch.equal(batch["tokens"][:, 1:], batch["labels"][:, :-1])
    assert batch["loss_mask"].dtype == torch.float32 and torch.all(batch["loss_mask"] == 1)
    assert torch.equal(batch["position_ids"][2], torch.arange(SEQ))
    # Independently of the loader: sample id -> shard and member via the index + tarfile.
    sid = int(batch["sample_ids"][1])
    shards = json.loads((shard_dir / "train.wids.json").read_text())["shardlist"]
    starts = np.cumsum([0] + [s["nsamples"] for s in shards])
    k = int(np.searchsorted(starts, sid, side="right")) - 1
    local = sid - int(starts[k])
    with tarfile.open(shard_dir / shards[k]["url"]) as tf:
        member = tf.getmembers()[local]
        raw = np.frombuffer(tf.extractfile(member).read(), dtype="<u2").astype(np.int64)
    assert torch.equal(batch["tokens"][1], torch.from_numpy(raw[:-1]))
    assert torch.equal(batch["labels"][1], torch.from_numpy(raw[1:]))


def test_eod_mask_loss_zeroes_positions_whose_input_is_eod(train):
    layout = BatchLayout(global_batch_size=8, micro_batch_size=8)
    with TrainBatchIterator(train, layout=layout, dp_rank=0, seed=1, eod_mask_loss=True) as it:
        b = next(it)
    is_eod = b["tokens"] == train.eod_id
    assert is_eod.any()
    assert torch.all(b["loss_mask"][is_eod] == 0) and torch.all(b["loss_mask"][~is_eod] == 1)


def test_reader_agrees_with_wids_reading_the_same_index_in_place(shard_dir):
    wids = pytest.importorskip("wids")
    # localname=identity: wids reads the tars where they are instead of copying to /tmp.
    ref = wids.ShardListDataset(
        str(shard_dir / "train.wids.json"), localname=lambda url: url, transformations=[lambda s: s]
    )
    with TokenShardDataset(shard_dir, "train") as ds:
        assert len(ds) == len(ref)
        for i in (0, 36, 37, 500, len(ds) - 1):
            raw = np.frombuffer(ref[i][".tokens"].getvalue(), dtype="<u2")
            assert np.array_equal(ds[i], raw)
    ref.close()


def test_a_val_subset_is_a_fixed_spread_over_the_split_not_a_prefix():
    ids = val_subset_ids(1000, 100)
    assert len(ids) == 100 and len(set(ids.tolist())) == 100
    assert np.all(np.diff(ids) > 0) and ids.min() >= 0 and ids.max() < 1000
    assert ids.tolist() != list(range(100))
    # Spread: every tenth of the split holds some of the subset.
    assert set((ids // 100).tolist()) == set(range(10))
    assert np.array_equal(ids, val_subset_ids(1000, 100))  # pure function of (N, k)
    assert np.array_equal(val_subset_ids(1000, None), np.arange(1000))
    assert np.array_equal(val_subset_ids(50, 100), np.arange(50))


def test_the_val_subset_reads_from_every_shard(shard_dir):
    shards = json.loads((shard_dir / "val.wids.json").read_text())["shardlist"]
    starts = np.cumsum([0] + [s["nsamples"] for s in shards])
    assert len(shards) >= 2, "the fixture's val split should span several shards"
    with open_split(shard_dir, "val", seq_length=SEQ, vocab_size=512) as val:
        k = len(val) // 2
        seen = [i for r in range(2) for b in val_batches(val, micro_batch_size=3, dp_rank=r,
                                                         dp_size=2, max_samples=k)
                for i in b["sample_ids"].tolist() if i >= 0]
    assert sorted(seen) == val_subset_ids(int(starts[-1]), k).tolist()
    shard_of = np.searchsorted(starts, seen, side="right") - 1
    assert set(shard_of.tolist()) == set(range(len(shards)))


def test_a_payload_with_ids_outside_the_vocabulary_names_the_shard_and_sample(shard_copy):
    first = sorted((shard_copy / "train").glob("*.tar"))[0]
    data = bytearray(first.read_bytes())
    tokens = 512 + 2 * 3  # sample 0's payload starts after its tar header; its 4th id
    data[tokens : tokens + 2] = (60000).to_bytes(2, "little")
    first.write_bytes(bytes(data))
    with open_split(shard_copy, "train", seq_length=SEQ, vocab_size=512) as ds:
        with pytest.raises(ShardCorruptError, match=rf"{first}: sample 0 \(sample id 0 of "
                                                    rf"split 'train'\) holds token id 60000 "
                                                    rf">= the tokenizer's vocab_size"):
            ds.read(np.array([5, 0]))
        ds.read(np.array([5, 1]))  # the other samples still read


def test_check_files_names_missing_and_truncated_shards_without_reading_them(shard_copy):
    shards = sorted((shard_copy / "train").glob("*.tar"))
    shards[0].unlink()
    shards[1].write_bytes(shards[1].read_bytes()[:1000])
    with open_split(shard_copy, "train", seq_length=SEQ, vocab_size=512) as ds:
        problems = ds.check_files()
    assert problems[0] == f"shard {shards[0]} listed in {shard_copy}/train.wids.json is missing"
    assert problems[1].startswith(f"shard {shards[1]} has 1000 bytes, fewer than its")
    assert len(problems) == 2
