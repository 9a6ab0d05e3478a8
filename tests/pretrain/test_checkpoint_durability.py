"""Checkpoints and data that stay correct on a real cluster (DeepSpeed, gloo, 2 ranks).

Durable and verified tags, one resume decision for all ranks, a save_dir proven shared,
nothing newer deleted, no poisoned state saved, the sample order checked on resume,
shard trouble that stops every rank at once, and a gradient norm under every ZeRO stage.
"""

import json
import shutil

import pytest

from tests.pretrain.train_helpers import copy_checkpoint, run_training, train_records

pytestmark = pytest.mark.multiproc

ZERO1 = ["train.zero_stage=1"]


@pytest.fixture
def saved(zero1_two_tags):
    """An 8-step ZeRO-1 run on 2 ranks with complete tags at steps 4 and 8 (shared)."""
    return zero1_two_tags


def logs(tmp_path, name):
    return [(tmp_path / f"{name}-logs" / f"rank{r}.log").read_text() for r in range(2)]


def test_meta_json_lists_every_file_of_the_tag_with_size_and_crc(saved):
    tag = saved / "step00000008"
    files = json.loads((tag / "meta.json").read_text())["files"]
    on_disk = {p.name for p in tag.iterdir() if p.name != "meta.json"}
    assert set(files) == on_disk
    assert {"rng_rank00000.pt", "rng_rank00001.pt", "mp_rank_00_model_states.pt"} <= on_disk
    for name, entry in files.items():
        assert entry["size"] == (tag / name).stat().st_size
        assert len(entry["crc32"]) == 8


def test_a_truncated_file_in_the_newest_tag_resumes_both_ranks_from_the_previous_tag(
        saved, shard_dir, tmp_path):
    run_dir = tmp_path / "truncated"
    shutil.copytree(saved, run_dir)
    victim = run_dir / "step00000008" / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    victim.write_bytes(victim.read_bytes()[:100])  # a node crash right after the save
    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=9")
    for log in logs(tmp_path, "truncated"):
        assert f"skipping checkpoint step00000008: {victim} has 100 bytes" in log
    assert f"resumed from {run_dir}/step00000004 (step 4" in logs(tmp_path, "truncated")[0]
    # Steps 5-8 were redone exactly; the damaged tag was set aside for inspection.
    reference, resumed = train_records(saved), train_records(run_dir)
    assert [resumed[s]["loss"] for s in range(5, 9)] == [reference[s]["loss"] for s in range(5, 9)]
    assert (run_dir / "abandoned" / "step00000008" / "meta.json").is_file()


def test_a_restart_at_the_same_dp_reads_only_its_own_optimizer_partition(
        saved, shard_dir, tmp_path):
    run_dir = tmp_path / "own"
    copy_checkpoint(saved, "step00000004", run_dir)
    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=6",
                 env={"LEV_LOG_ALL_RANKS": "1"})
    for rank, log in enumerate(logs(tmp_path, "own")):
        assert (f"read 1 of 2 ZeRO optimizer partitions (this rank's: "
                f"{run_dir}/step00000004/zero_pp_rank_{rank}_mp_rank_00_optim_states.pt)") in log
    reference, resumed = train_records(saved), train_records(run_dir)
    assert [resumed[s]["loss"] for s in (5, 6)] == [reference[s]["loss"] for s in (5, 6)]


def test_a_save_dir_that_is_not_shared_stops_every_rank_before_any_step(shard_dir, tmp_path):
    run_dir = tmp_path / "local"
    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=2",
                 "checkpoint.probe_timeout_s=2", env={"LEV_FAULT_UNSHARED_SAVE_DIR": "1"},
                 expect=2)
    first, second = logs(tmp_path, "local")  # one message per job: rank 0 prints it
    assert f"checkpoint.save_dir={run_dir}" in first
    assert "is not the same directory on every node" in first
    assert "rank 1 (" in first and "cannot see the probes of rank(s) 0" in first
    assert "is not the same directory on every node" not in second
    assert not (run_dir / "metrics.jsonl").exists()


def test_a_fresh_start_in_a_used_save_dir_is_refused_and_overwrite_sets_tags_aside(
        saved, shard_dir, tmp_path):
    run_dir = tmp_path / "reused"
    shutil.copytree(saved, run_dir)
    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=2", "checkpoint.resume=none",
                 expect=2)
    assert "checkpoint.resume=none but" in logs(tmp_path, "reused")[0]
    assert (run_dir / "step00000008" / "meta.json").is_file()

    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=2", "checkpoint.resume=none",
                 "checkpoint.overwrite=true")
    assert sorted(p.name for p in (run_dir / "abandoned").iterdir()) == [
        "step00000004", "step00000008"]
    assert sorted(p.name for p in run_dir.glob("step*")) == ["step00000002"]


@pytest.mark.parametrize(("stage", "code", "tags"), [
    (3, 0, ["step00000002", "step00000006"]),  # ZeRO-3 skips the update: training goes on
    (0, 3, ["step00000002"]),  # ZeRO-0 applies it: poisoned, nothing after step 2 is saved
])
def test_a_non_finite_step_on_a_save_step_is_never_saved(shard_dir, tmp_path, stage, code,
                                                          tags):
    run_dir = tmp_path / "poisoned"
    run_training(2, run_dir, shard_dir, f"train.zero_stage={stage}", "train.train_steps=6",
                 "checkpoint.save_interval=2", "train.max_skipped_steps=10",
                 env={"LEV_FAULT_NAN_LOSS_STEPS": "4"}, expect=code)
    assert sorted(p.name for p in run_dir.glob("step*")) == tags
    for log in logs(tmp_path, "poisoned"):
        assert "not saving step 4: " in log
        assert "the last good checkpoint is step 2" in log
    if code:
        first, second = logs(tmp_path, "poisoned")
        assert f"last good checkpoint: step 2 in {run_dir}" in first
        assert "last good checkpoint: step 2 in" not in second


def test_resuming_with_another_sample_order_is_refused_by_name(saved, shard_dir, tmp_path):
    run_dir = tmp_path / "reordered"
    copy_checkpoint(saved, "step00000004", run_dir)
    run_training(2, run_dir, shard_dir, *ZERO1, "train.train_steps=6", "data.shuffle_seed=99",
                 expect=2)
    meta = json.loads((run_dir / "step00000004" / "meta.json").read_text())
    log = logs(tmp_path, "reordered")[0]
    assert f"sample order: checkpoint {meta['order_fingerprint']}, this run " in log
    assert "checkpoint.force_resume=true" in log


def test_a_missing_shard_stops_both_ranks_with_the_shard_named(shard_copy, tmp_path):
    victim = sorted((shard_copy / "train").glob("*.tar"))[-1]
    victim.unlink()
    run_training(2, tmp_path / "noshard", shard_copy, *ZERO1, "train.train_steps=2",
                 expect=2, timeout=120)
    first, second = logs(tmp_path, "noshard")
    assert f"shard {victim} listed in" in first and "is missing" in first
    assert "seen by rank 0 (" in first and "rank 1 (" in first
    assert "is missing" not in second


def test_zero0_reports_the_gradient_norm_it_clips_with_and_metrics_are_strict_json(
        shard_dir, tmp_path):
    norms = {}
    for stage in (0, 1):
        run_dir = tmp_path / f"zero{stage}"
        run_training(2, run_dir, shard_dir, f"train.zero_stage={stage}", "train.train_steps=2")
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))
        norms[stage] = [train_records(run_dir)[s]["grad_norm"] for s in (1, 2)]
    # Same initial weights and batch: step 1's gradients are the same under both stages.
    assert norms[0][0] == pytest.approx(norms[1][0], rel=1e-5)
    assert all(n is not None and n > 0 for n in norms[0])
