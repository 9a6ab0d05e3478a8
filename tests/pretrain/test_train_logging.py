"""What a run says: one start-up block, a log line that answers "how long", and the same
numbers in metrics.jsonl and (offline) Weights & Biases, which a resumed run continues."""

from __future__ import annotations

import json

import pytest

from tests.pretrain.train_helpers import run_training, train_records

pytestmark = pytest.mark.multiproc

WANDB = ["train.wandb.enabled=true", "train.wandb.mode=offline", "train.wandb.project=lev-test"]


@pytest.fixture(scope="module")
def logged_run(shard_dir, tmp_path_factory):
    """6 steps with evaluation and W&B offline, then the same save_dir resumed to 9."""
    save = tmp_path_factory.mktemp("logged") / "run"
    common = ["train.eval_interval=3", "checkpoint.save_interval=3", *WANDB]
    run_training(1, save, shard_dir, *common, "train.train_steps=6")
    first_log = (save.parent / "run-logs" / "rank0.log").read_text()
    run_training(1, save, shard_dir, *common, "train.train_steps=9")
    return save, first_log


def test_the_start_up_block_says_what_how_and_how_much(logged_run, shard_dir):
    _, log = logged_run
    block = log[log.index("start-up:"):]
    assert "model: lev, " in block and " parameters = backbone " in block
    assert "parallel: 1 rank(s) via torchrun = TP 1 x DP 1; ZeRO-1, fp32" in block
    assert "batch: micro 2 x accumulation 4 x DP 1 = global 8 samples = 256 tokens" in block
    assert f"data: {shard_dir}: " in block and "this run reads 48 samples = " in block
    assert "  train: seed=1234 micro_batch_size=2 global_batch_size=8 train_steps=6" in block
    for noise in ("Megatron-FSDP", "untested optimizer", "Setting accelerator to CPU",
                  "gcc ", "built successfully"):
        assert noise not in log, noise


def test_the_log_line_has_step_of_total_pace_memory_and_eta(logged_run):
    save, log = logged_run
    assert "step 3/6 | loss " in log and " ms/step | " in log and " | rss " in log
    assert " GiB | ETA " in log
    records = train_records(save)
    assert all(records[s]["train_steps"] == (6 if s <= 6 else 9) for s in records)
    assert all(records[s]["ms_per_step"] > 0 and records[s]["memory_gib"] > 0.05
               for s in records)
    # The ETA is the steps left at the last interval's pace, 0 at the end of the run.
    for s in range(1, 7):
        assert records[s]["eta_s"] == pytest.approx((6 - s) * records[s]["ms_per_step"] / 1000)
    assert records[6]["eta_s"] == 0 and records[5]["eta_s"] > 0


def test_wandb_offline_mirrors_the_metrics_and_a_resume_continues_the_same_run(logged_run):
    save, _ = logged_run
    run_id = (save / "wandb_run_id").read_text().strip()
    runs = sorted((save / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs)
    # Offline runs are protobuf records (run-ID.wandb) for `wandb sync`; the logged keys
    # and values are stored as text inside them.
    first, resumed = ((r / f"run-{run_id}.wandb").read_bytes() for r in runs)
    assert b"train/loss" in first and b"embedding" in first  # metrics and the config
    last = train_records(save)[9]
    assert json.dumps(last["loss"]).encode() in resumed and b"val/val_loss" in resumed
