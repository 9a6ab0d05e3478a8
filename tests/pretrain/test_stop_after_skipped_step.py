"""A stop right after a skipped (non-finite) step is an ordinary stop.

ZeRO-1 skips the update of a step whose gradients are NaN/Inf, so the weights stay those
of the last finite step. A signal or the time budget arriving then used to end the run
with exit 3 (final, never retried); it saves and exits 75, and the relaunch continues
exactly where the uninterrupted run goes on.
"""

import json

import pytest

from tests.pretrain.train_helpers import run_training, train_records

pytestmark = pytest.mark.multiproc

NAN_AT_STEP_1 = {"LEV_FAULT_NAN_LOSS_STEPS": "1"}
ZERO1 = ["train.zero_stage=1", "train.max_skipped_steps=3"]


def test_a_stop_right_after_a_skipped_step_saves_exits_75_and_resumes_exactly(
        shard_dir, tmp_path):
    # The time budget (6 ms) has run out by the first step boundary: the stop comes right
    # after step 1, whose loss is NaN and whose update ZeRO-1 skips.
    stopped = tmp_path / "stopped"
    run_training(2, stopped, shard_dir, *ZERO1, "train.train_steps=4",
                 "train.exit_duration_mins=0.0001", env=NAN_AT_STEP_1, expect=75)
    log = (tmp_path / "stopped-logs" / "rank0.log").read_text()
    assert "step 1's update was skipped (non-finite loss); saving" in log
    meta = json.loads((stopped / "step00000001" / "meta.json").read_text())
    assert meta["consumed_samples"] == 8 and meta["skipped_in_a_row"] == 1

    run_training(2, stopped, shard_dir, *ZERO1, "train.train_steps=4", env=NAN_AT_STEP_1)
    straight = tmp_path / "straight"
    run_training(2, straight, shard_dir, *ZERO1, "train.train_steps=4", env=NAN_AT_STEP_1)
    resumed, reference = train_records(stopped), train_records(straight)
    for step in (2, 3, 4):
        assert resumed[step]["sample_ids"] == reference[step]["sample_ids"]
        assert resumed[step]["loss"] == reference[step]["loss"], f"step {step}"
