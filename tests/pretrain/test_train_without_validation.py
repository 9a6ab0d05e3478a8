"""A run with evaluation off needs no validation split (shards made with --val-fraction 0)."""

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.pretrain.train_helpers import run_training

pytestmark = pytest.mark.multiproc


@pytest.fixture(scope="module")
def train_only_shards(shard_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_only") / "data"
    subprocess.run([sys.executable, "data_prep/shard.py", "--input",
                    str(shard_dir.parent / "corpus.jsonl"), "--tokenizer",
                    str(shard_dir.parent / "tokenizer.json"), "--output", str(out),
                    "--seq-length", "32", "--val-fraction", "0", "--no-progress"],
                   cwd=REPO, check=True, capture_output=True)
    return out


def test_training_without_evaluation_runs_on_shards_without_validation(train_only_shards,
                                                                        tmp_path):
    run_training(1, tmp_path / "run", train_only_shards, "train.train_steps=2",
                 "train.eval_interval=0")
    assert (tmp_path / "run" / "step00000002" / "meta.json").is_file()


def test_evaluation_on_such_shards_is_refused_by_name(train_only_shards, tmp_path):
    run_training(1, tmp_path / "run", train_only_shards, "train.train_steps=2",
                 "train.eval_interval=1", expect=2)
    log = (tmp_path / "run-logs" / "rank0.log").read_text()
    assert "val.wids.json lists no shards; these shards have no validation split" in log
    assert "set train.eval_interval=0" in log
