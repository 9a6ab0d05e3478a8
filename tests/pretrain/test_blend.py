"""Weighted mixtures of shard directories: the order is exact, resumable and elastic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pretrain.config import ConfigError, load_config
from pretrain.config.data_path import MIX_BLOCK, parse_data_path
from pretrain.data.blend import BlendedDataset, MixtureOrder, block_counts, open_data
from pretrain.data.shards import DataMismatchError
from tests.pretrain.conftest import REPO, SEQ_LENGTH, VOCAB_SIZE
from tests.pretrain.train_helpers import copy_checkpoint, run_training, train_records


def shard(corpus_files: list[Path], tokenizer: Path, out: Path) -> Path:
    docs = [p.strip() for f in corpus_files
            for p in f.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 40]
    corpus = out.parent / f"{out.name}.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    subprocess.run([sys.executable, str(REPO / "data_prep" / "shard.py"), "--input", str(corpus),
                    "--tokenizer", str(tokenizer), "--output", str(out), "--seq-length",
                    str(SEQ_LENGTH), "--val-fraction", "0.1", "--no-progress"],
                   check=True, capture_output=True, cwd=REPO, timeout=300)
    return out


@pytest.fixture(scope="module")
def second_source(shard_dir, tmp_path_factory) -> Path:
    """Other real text (argparse, difflib sources), the same tokenizer and seq_length."""
    lib = Path(os.__file__).parent
    return shard([lib / "argparse.py", lib / "difflib.py"], shard_dir.parent / "tokenizer.json",
                 tmp_path_factory.mktemp("second") / "data")


def test_the_three_path_forms_give_the_same_sources():
    forms = ["0.7 /data/pile 0.3 /data/code", [0.7, "/data/pile", 0.3, "/data/code"],
             [{"path": "/data/pile", "weight": 7}, {"path": "/data/code", "weight": 3}]]
    parsed = [parse_data_path(f) for f in forms]
    assert parsed[0] == parsed[1] == parsed[2]
    assert [(s.name, s.weight) for s in parsed[0]] == [("pile", pytest.approx(0.7)),
                                                       ("code", pytest.approx(0.3))]
    assert [s.path for s in parse_data_path("/data/one")] == ["/data/one"]


@pytest.mark.parametrize("value, message", [
    ("0.7 /a /b", "alternates weights and directories"),
    ([{"path": "/a", "weight": -1}], "a weight must be a number > 0"),
    ([{"path": "/a", "wieght": 1}], "unknown keys ['wieght']"),
    ("1 /a 0.00001 /b", "below 1/8192"),
])
def test_a_malformed_mixture_is_refused_at_config_time(value, message):
    with pytest.raises(ConfigError, match=None) as caught:
        load_config("pretrain/configs/tiny_lev.yaml", [f"data.path={json.dumps(value)}"])
    assert message in str(caught.value)


def test_every_block_holds_each_source_exactly_its_rounded_share():
    counts = block_counts([0.7, 0.2, 0.1])
    assert counts.sum() == MIX_BLOCK and counts.tolist() == [5735, 1638, 819]
    order = MixtureOrder([5000, 800, 60], [0.7, 0.2, 0.1], seed=3)
    for k in (1, 2, 5):
        assert order.positions_per_source(k * MIX_BLOCK).tolist() == (k * counts).tolist()


def test_realised_proportions_are_within_one_percent_over_10k_samples():
    order = MixtureOrder([5000, 800], [0.7, 0.3], seed=1234)
    ids = order.sample_ids(0, 10_000)
    share_b = np.mean(ids >= 5000)
    assert abs(share_b - 0.3) < 0.01
    assert order.positions_per_source(10_000).tolist() == [int((ids < 5000).sum()),
                                                          int((ids >= 5000).sum())]


def test_each_source_runs_its_own_epochs_each_a_full_permutation():
    order = MixtureOrder([20_000, 800], [0.7, 0.3], seed=7)
    ids = order.sample_ids(0, 10_000)
    large, small = ids[ids < 20_000], ids[ids >= 20_000] - 20_000
    assert len(small) > 3 * 800  # the small source is in its 4th epoch...
    for epoch in range(3):  # ...and each of its epochs visits every sample once
        assert sorted(small[epoch * 800:(epoch + 1) * 800]) == list(range(800))
    assert len(set(large)) == len(large)  # while the large one is still in its first
    assert order.positions_per_source(10_000).tolist() == [len(large), len(small)]


def test_the_order_is_a_pure_function_of_seed_weights_and_position():
    order = MixtureOrder([5000, 800], [0.7, 0.3], seed=7)
    whole = order.sample_ids(0, 20_000)
    pieces = np.concatenate([MixtureOrder([5000, 800], [0.7, 0.3], seed=7).sample_ids(a, b)
                             for a, b in ((0, 9_000), (9_000, 16_385), (16_385, 20_000))])
    np.testing.assert_array_equal(whole, pieces)
    other_seed = MixtureOrder([5000, 800], [0.7, 0.3], seed=8)
    other_weights = MixtureOrder([5000, 800], [0.6, 0.4], seed=7)
    assert not np.array_equal(other_seed.sample_ids(0, 100), whole[:100])
    assert len({order.fingerprint, other_seed.fingerprint, other_weights.fingerprint}) == 3


def test_a_blend_reads_each_source_through_its_offset(shard_dir, second_source):
    blend = open_data(f"0.5 {shard_dir} 0.5 {second_source}", "train",
                      seq_length=SEQ_LENGTH, vocab_size=VOCAB_SIZE)
    one = open_data(str(shard_dir), "train", seq_length=SEQ_LENGTH, vocab_size=VOCAB_SIZE)
    two = open_data(str(second_source), "train", seq_length=SEQ_LENGTH, vocab_size=VOCAB_SIZE)
    assert isinstance(blend, BlendedDataset) and len(blend) == len(one) + len(two)
    ids = np.array([3, len(one) + 5, 0])
    np.testing.assert_array_equal(blend.read(ids), np.stack([one[3], two[5], one[0]]))
    assert blend.manifest["fingerprint"] not in (one.manifest["fingerprint"],
                                                 two.manifest["fingerprint"])


def test_sources_with_different_tokenizers_are_refused_naming_both(shard_dir, tmp_path):
    lib = Path(os.__file__).parent
    tokenizer = tmp_path / "other.json"
    subprocess.run([sys.executable, str(REPO / "data_prep" / "train_tokenizer.py"), "--input",
                    str(lib / "LICENSE.txt"), "--output", str(tokenizer), "--vocab-size", "300"],
                   check=True, capture_output=True, cwd=REPO, timeout=300)
    other = shard([lib / "argparse.py"], tokenizer, tmp_path / "other")
    with pytest.raises(DataMismatchError) as caught:
        open_data(f"0.5 {shard_dir} 0.5 {other}", "train", seq_length=SEQ_LENGTH,
                  vocab_size=VOCAB_SIZE)
    assert "different tokenizer" in str(caught.value)
    assert str(shard_dir) in str(caught.value) and str(other) in str(caught.value)


@pytest.mark.multiproc
def test_a_blended_run_resumes_on_another_dp_size_with_the_same_samples(
        shard_dir, second_source, tmp_path):
    mixture = (f"data.path=[{{path: {shard_dir}, weight: 0.7, name: license}}, "
               f"{{path: {second_source}, weight: 0.3, name: code}}]")
    common = [mixture, "train.zero_stage=1", "train.train_steps=8", "train.eval_interval=4",
              "train.eval_samples=16"]
    straight = tmp_path / "straight"
    run_training(2, straight, shard_dir, *common, "checkpoint.save_interval=4")
    resumed = tmp_path / "resumed"
    copy_checkpoint(straight, "step00000004", resumed)
    run_training(1, resumed, shard_dir, *common)  # DP 2 -> 1, same global batch
    a, b = train_records(straight), train_records(resumed)
    for step in range(5, 9):
        assert b[step]["sample_ids"] == a[step]["sample_ids"], f"step {step}"
        assert b[step]["loss"] == pytest.approx(a[step]["loss"], rel=1e-4)
    assert a[8]["data/license/share"] + a[8]["data/code/share"] == pytest.approx(1.0)
    code = open_data(str(second_source), "train", seq_length=SEQ_LENGTH, vocab_size=VOCAB_SIZE)
    consumed = 8 * 8  # steps x global batch
    assert a[8]["data/code/epochs"] == pytest.approx(a[8]["data/code/share"] * consumed / len(code))
    assert a[8]["data/code/epochs"] > 0
    evals = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()
             if '"val_loss"' in line]
    assert evals and {"val_loss/license", "val_loss/code"} <= set(evals[-1])
    weighted = 0.7 * evals[-1]["val_loss/license"] + 0.3 * evals[-1]["val_loss/code"]
    assert evals[-1]["val_loss"] == pytest.approx(weighted, rel=1e-9)
