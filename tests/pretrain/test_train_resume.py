"""Exact, elastic and crash-safe resume of real DeepSpeed + megatron-core runs (gloo, CPU)."""

import os
import signal
import time

import pytest

from tests.conftest import rank_logs, spawn_ranks, wait_ranks
from tests.pretrain.train_helpers import (
    copy_checkpoint,
    run_training,
    train_argv,
    train_records,
)

pytestmark = pytest.mark.multiproc

STEPS = 12
SCENARIOS = {
    "zero1-dp2": ["train.zero_stage=1"],
    "zero3-dp2": ["train.zero_stage=3"],
    "zero1-tp2": ["train.zero_stage=1", "parallel.tensor_parallel=2"],
}


@pytest.fixture(scope="module")
def straight(shard_dir, tmp_path_factory):
    """Uninterrupted 12-step runs (checkpoints every 4 steps), run once per scenario."""
    runs = {}

    def get(name):
        if name not in runs:
            save = tmp_path_factory.mktemp(name) / "straight"
            run_training(2, save, shard_dir, *SCENARIOS[name], f"train.train_steps={STEPS}",
                         "checkpoint.save_interval=4", "checkpoint.keep_last=5")
            runs[name] = save
        return runs[name]

    return get


def assert_same_steps(a: dict, b: dict, steps, exact: bool = True):
    for step in steps:
        assert b[step]["sample_ids"] == a[step]["sample_ids"], f"step {step} read other samples"
        if exact:
            assert b[step]["loss"] == a[step]["loss"], f"step {step}: {b[step]['loss']!r} != {a[step]['loss']!r}"
        else:
            assert b[step]["loss"] == pytest.approx(a[step]["loss"], rel=1e-4), f"step {step}"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(straight, shard_dir, tmp_path, scenario):
    reference = straight(scenario)
    resumed = tmp_path / "resumed"
    copy_checkpoint(reference, "step00000004", resumed)
    run_training(2, resumed, shard_dir, *SCENARIOS[scenario], f"train.train_steps={STEPS}")
    assert_same_steps(train_records(reference), train_records(resumed), range(5, STEPS + 1))


def test_elastic_resume_dp2_to_dp1_and_back_continues_the_same_samples(straight, shard_dir,
                                                                       tmp_path):
    reference = straight("zero1-dp2")
    run_dir = tmp_path / "elastic"
    copy_checkpoint(reference, "step00000004", run_dir)
    run_training(1, run_dir, shard_dir, "train.zero_stage=1", "train.train_steps=8")  # DP=1
    run_training(2, run_dir, shard_dir, "train.zero_stage=1", f"train.train_steps={STEPS}")
    records = train_records(run_dir)
    assert_same_steps(train_records(reference), records, range(5, STEPS + 1), exact=False)


def test_kill_during_save_leaves_the_previous_checkpoint_and_auto_resume_uses_it(
        straight, shard_dir, tmp_path):
    run_dir = tmp_path / "killed"
    codes = run_training(2, run_dir, shard_dir, "train.zero_stage=1", f"train.train_steps={STEPS}",
                         "checkpoint.save_interval=2",
                         env={"LEV_FAULT_KILL_DURING_SAVE_STEP": "6"}, expect=None)
    assert codes == [-signal.SIGKILL] * 2
    assert (run_dir / "step00000006").is_dir() and not (run_dir / "step00000006/meta.json").exists()
    assert (run_dir / "latest").read_text().strip() == "step00000004"

    run_training(2, run_dir, shard_dir, "train.zero_stage=1", f"train.train_steps={STEPS}",
                 "checkpoint.resume=auto")
    log = (tmp_path / "killed-logs" / "rank0.log").read_text()
    assert "resumed from" in log and "step00000004" in log
    assert_same_steps(train_records(straight("zero1-dp2")), train_records(run_dir),
                      range(5, STEPS + 1))


def test_sigusr1_on_one_rank_saves_on_all_exits_75_and_resume_is_exact(straight, shard_dir,
                                                                       tmp_path):
    run_dir = tmp_path / "signalled"
    log_dir = tmp_path / "signalled-logs"
    argv = train_argv(run_dir, shard_dir, "train.zero_stage=1", f"train.train_steps={STEPS}")
    procs = spawn_ranks(2, argv, log_dir=log_dir)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if (run_dir / "metrics.jsonl").exists() and train_records(run_dir):
            break
        time.sleep(0.02)
    os.kill(procs[1].pid, signal.SIGUSR1)  # one rank only: the other must follow
    codes = wait_ranks(procs, log_dir)
    assert codes == [75, 75], rank_logs(log_dir)
    stopped_at = int((run_dir / "latest").read_text().strip()[4:])
    assert stopped_at < STEPS, "the signal arrived after the last step; nothing was tested"

    run_training(2, run_dir, shard_dir, "train.zero_stage=1", f"train.train_steps={STEPS}")
    assert_same_steps(train_records(straight("zero1-dp2")), train_records(run_dir),
                      range(1, STEPS + 1))


def test_shards_with_another_seq_length_are_refused_by_name(shard_dir, tmp_path):
    run_training(1, tmp_path / "bad", shard_dir, "model.seq_length=64", "train.train_steps=1",
                 expect=2)
    log = (tmp_path / "bad-logs" / "rank0.log").read_text()
    assert "seq_length" in log and "64" in log and "32" in log


def test_resume_into_a_changed_model_shape_is_refused_by_name(straight, shard_dir, tmp_path):
    run_dir = tmp_path / "reshaped"
    copy_checkpoint(straight("zero1-dp2"), "step00000004", run_dir)
    run_training(1, run_dir, shard_dir, "model.ffn_hidden_size=128", f"train.train_steps={STEPS}",
                 expect=2)
    log = (tmp_path / "reshaped-logs" / "rank0.log").read_text()
    assert "model.ffn_hidden_size: checkpoint 64, config 128" in log
    assert "checkpoint.force_resume=true" in log
