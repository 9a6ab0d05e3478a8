"""A transient read error never costs a run: real 2-rank restarts.

Restart verification used to move any tag that failed on one rank to abandoned/, exit 2
(final) when all failed, and let the next resume=auto start from step 0. Now an I/O
error is retried, then stops the run with exit 74 (retryable) moving nothing; damaged
tags are skipped in memory only; and step 0 is refused while abandoned/ holds tags.
``LEV_FAULT_READ_EIO=RANK:N`` fails that rank's first N checkpoint reads with EIO.
"""

import shutil

import pytest

from tests.pretrain.train_helpers import run_training, train_records

pytestmark = pytest.mark.multiproc

ZERO1 = ["train.zero_stage=1"]


@pytest.fixture
def saved(zero1_two_tags):
    """An 8-step ZeRO-1 run on 2 ranks with complete tags at steps 4 and 8 (shared)."""
    return zero1_two_tags


def log_of(tmp_path, name, rank=0):
    return (tmp_path / f"{name}-logs" / f"rank{rank}.log").read_text()


def test_a_transient_read_error_on_one_rank_is_retried_and_the_newest_tag_is_used(
        saved, shard_dir, tmp_path):
    run_dir = tmp_path / "flaky"
    shutil.copytree(saved, run_dir)
    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=9",
                 env={"LEV_FAULT_READ_EIO": "1:2"})  # rank 1's first two reads fail
    assert "retrying in 1 s (attempt 1 of 3)" in log_of(tmp_path, "flaky", rank=1)
    assert f"resumed from {run_dir}/step00000008 (step 8" in log_of(tmp_path, "flaky")
    assert not (run_dir / "abandoned").exists()
    assert train_records(run_dir)[9]["loss"] is not None


def test_a_lasting_read_error_exits_74_moves_nothing_and_the_relaunch_resumes_the_newest(
        saved, shard_dir, tmp_path):
    run_dir = tmp_path / "stalled"
    shutil.copytree(saved, run_dir)
    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=9",
                 "checkpoint.io_attempts=2", env={"LEV_FAULT_READ_EIO": "1:1000"}, expect=74)
    log = log_of(tmp_path, "stalled")
    assert f"checkpoint {run_dir}/step00000008 could not be verified: " in log
    assert "could not be read on rank 1 ([Errno 5] Input/output error" in log
    assert "Nothing was moved or deleted; relaunch to retry" in log
    assert sorted(p.name for p in run_dir.glob("step*")) == ["step00000004", "step00000008"]
    assert not (run_dir / "abandoned").exists()

    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=9")  # the file system is back
    assert f"resumed from {run_dir}/step00000008 (step 8" in log_of(tmp_path, "stalled")


def test_a_damaged_tag_is_skipped_in_memory_and_set_aside_only_after_the_next_save(
        saved, shard_dir, tmp_path):
    run_dir = tmp_path / "damaged"
    shutil.copytree(saved, run_dir)
    (run_dir / "step00000008" / "mp_rank_00_model_states.pt").unlink()
    # This restart ends (non-finite losses, exit 3) before it saves: nothing is moved.
    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=9",
                 "train.max_skipped_steps=1", env={"LEV_FAULT_NAN_LOSS_STEPS": "5,6"}, expect=3)
    assert "skipping checkpoint step00000008: " in log_of(tmp_path, "damaged")
    assert (run_dir / "step00000008" / "meta.json").is_file()
    assert not (run_dir / "abandoned").exists()

    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=9")
    assert (run_dir / "abandoned" / "step00000008" / "meta.json").is_file()
    assert sorted(p.name for p in run_dir.glob("step*")) == ["step00000004", "step00000009"]


def test_step_0_is_refused_while_abandoned_holds_tags_naming_the_setting_that_allows_it(
        saved, shard_dir, tmp_path):
    run_dir = tmp_path / "emptied"
    (run_dir / "abandoned").mkdir(parents=True)
    shutil.copytree(saved / "step00000008", run_dir / "abandoned" / "step00000008")
    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=2", expect=2)
    log = log_of(tmp_path, "emptied")
    assert f"found no checkpoint in {run_dir}, but {run_dir}/abandoned/ holds step00000008" in log
    assert "checkpoint.ignore_abandoned=true" in log
    assert not (run_dir / "metrics.jsonl").exists()

    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=2",
                 "checkpoint.ignore_abandoned=true")
    assert sorted(train_records(run_dir)) == [1, 2]
