"""Stopping: non-finite losses (skip, then exit 3) and the wall-time budget (save, exit 75)."""

import math

import pytest

from tests.pretrain.train_helpers import run_training, train_records

pytestmark = pytest.mark.multiproc


def test_a_nan_loss_step_is_skipped_and_training_goes_on(shard_dir, tmp_path):
    run_dir = tmp_path / "nan-once"
    run_training(2, run_dir, shard_dir, "train.train_steps=5", "train.max_skipped_steps=2",
                 env={"LEV_FAULT_NAN_LOSS_STEPS": "3"})
    records = train_records(run_dir)
    assert records[3]["skipped"] and records[3]["loss"] is None  # NaN is null in strict JSON
    assert records[3]["lr"] == records[2]["lr"]  # the schedule did not advance either
    assert not records[4]["skipped"] and math.isfinite(records[4]["loss"])
    assert math.isfinite(records[5]["loss"])


def test_too_many_consecutive_nan_steps_stop_with_exit_3_naming_the_last_checkpoint(
        shard_dir, tmp_path):
    run_dir = tmp_path / "nan-always"
    run_training(2, run_dir, shard_dir, "train.train_steps=8", "train.max_skipped_steps=2",
                 "checkpoint.save_interval=2", env={"LEV_FAULT_NAN_LOSS_STEPS": "3,4,5,6"},
                 expect=3)
    log = (tmp_path / "nan-always-logs" / "rank0.log").read_text()
    assert "3 consecutive non-finite losses up to step 5" in log
    # A step whose loss was non-finite is never saved (here step 4, although skipped).
    assert "not saving step 4: its loss was non-finite" in log
    assert "last good checkpoint: step 2" in log


def test_time_budget_saves_exits_75_at_a_step_boundary_and_publishes_75(shard_dir, tmp_path):
    run_dir = tmp_path / "budget"
    code_file = tmp_path / "launcher" / "exit_code.run0"
    code_file.parent.mkdir()
    run_training(2, run_dir, shard_dir, "train.train_steps=1000", "train.exit_duration_mins=0.0001",
                 env={"LEV_EXIT_CODE_FILE": str(code_file)}, expect=75)
    assert code_file.read_text() == "75\n"  # rank 0's, for the launcher
    assert [p.name for p in code_file.parent.iterdir()] == ["exit_code.run0"]
    stopped_at = int((run_dir / "latest").read_text().strip()[4:])
    assert 1 <= stopped_at < 1000
    assert (run_dir / f"step{stopped_at:08d}" / "meta.json").is_file()
