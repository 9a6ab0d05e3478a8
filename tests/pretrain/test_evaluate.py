"""Evaluation: frequency buckets (pure), and `python -m pretrain.evaluate` on real checkpoints.

Three short real training runs (module-scoped): LEV ZeRO-1 DP=2, tied ZeRO-3 DP=2 and
LEV ZeRO-1 TP=2; every evaluation runs through the same rank launcher as training.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pretrain.evaluation.buckets import frequency_buckets
from pretrain.evaluation.report import mean_curve, summarize, tokens_to_target
from tests.conftest import rank_logs, spawn_ranks, wait_ranks
from tests.pretrain.conftest import TRAINED_STEPS

STEPS = TRAINED_STEPS


# ---------------------------------------------------------------- pure: bucket edges
def test_bucket_edges_of_a_hand_checked_small_case():
    # T = 16; count groups 1 (mass 2, mid 1), 2 (mid 3), 4 (mid 6) -> floor(2*mid/16) = 0;
    # 8 (mid 12) -> 1. Id 0 never occurs in train.
    spec = frequency_buckets(np.array([0, 1, 1, 2, 4, 8]), num_buckets=2)
    assert spec.token_bucket.tolist() == [0, 1, 1, 1, 1, 2]
    assert spec.names == ["unseen", "b1", "b2"]
    assert spec.min_count == [0, 1, 8] and spec.max_count == [0, 4, 8]
    assert spec.num_ids == [1, 4, 1] and spec.train_tokens == [0, 8, 8]


def test_equal_counts_share_a_bucket_and_ranges_increase():
    counts = np.array([5] * 10 + [1] * 30 + [100, 0, 0])
    spec = frequency_buckets(counts, num_buckets=4)
    b = spec.token_bucket
    assert len(set(b[:10])) == 1 and len(set(b[10:40])) == 1
    assert b[41] == b[42] == 0
    nonempty = [k for k in range(1, 5) if spec.num_ids[k]]
    for k, k2 in itertools.pairwise(nonempty):
        assert spec.max_count[k] < spec.min_count[k2]
    assert sum(spec.train_tokens) == counts.sum()


def test_buckets_hold_roughly_equal_train_mass_on_a_zipf_vocabulary():
    counts = (100_000 / np.arange(1, 2001)).astype(np.int64)  # Zipf, many distinct counts
    spec = frequency_buckets(counts, num_buckets=5)
    shares = np.array(spec.train_tokens[1:]) / counts.sum()
    assert np.all(np.abs(shares - 0.2) < 0.1), shares
    assert spec.num_ids[1] > spec.num_ids[5]  # the rare bucket holds many ids


def test_ids_past_the_counts_file_are_unseen():
    spec = frequency_buckets(np.array([3, 1]), num_buckets=1, vocab_size=4)
    assert spec.token_bucket.tolist() == [1, 1, 0, 0]


def test_bad_bucket_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="`num_buckets` must be >= 1"):
        frequency_buckets(np.array([1, 2]), num_buckets=0)
    with pytest.raises(ValueError, match="negative"):
        frequency_buckets(np.array([1, -2]))


def test_tokens_to_target_interpolates_between_evaluations():
    ref = {10: 5.0, 20: 4.0, 30: 3.5, 40: 3.0}
    base = {10: 5.5, 20: 4.5, 40: 3.9}
    t = tokens_to_target(ref, base)
    # 3.9 lies 0.1/0.5 of the way from step 20 (4.0) to step 30 (3.5): step 22.
    assert t["reached"] and t["baseline_step"] == 40
    assert t["reference_step"] == pytest.approx(22.0)
    assert t["ratio"] == pytest.approx(22 / 40)


def test_tokens_to_target_counts_tokens_not_steps():
    # The reference takes twice the tokens per step: the same step is twice the tokens.
    t = tokens_to_target({10: 4.0, 20: 3.0}, {20: 3.5}, reference_tokens_per_step=2,
                         baseline_tokens_per_step=1)
    assert t["reference_step"] == pytest.approx(15.0)
    assert t["ratio"] == pytest.approx(15 * 2 / 20)


def test_tokens_to_target_in_both_directions_when_the_reference_is_slower():
    lev = {10: 5.0, 20: 4.2, 30: 4.0}
    tied = {10: 4.8, 20: 4.0, 30: 3.6}
    assert not tokens_to_target(lev, tied)["reached"]  # lev never reaches tied's 3.6
    back = tokens_to_target(tied, lev)  # tied reaches lev's final 4.0 exactly at step 20
    assert back["reached"] and back["reference_step"] == pytest.approx(20.0)
    assert back["ratio"] == pytest.approx(20 / 30)


def test_tokens_to_target_reached_at_the_first_evaluation_is_not_extrapolated():
    t = tokens_to_target({10: 3.0, 20: 2.0}, {10: 4.0, 20: 3.5})
    assert t["reference_step"] == 10.0 and t["ratio"] == pytest.approx(0.5)
    assert tokens_to_target({}, {10: 1.0})["reason"]


def test_mean_curve_averages_the_seeds_over_their_common_steps():
    assert mean_curve([{10: 4.0, 20: 3.0}, {10: 2.0, 20: 1.0, 30: 0.5}]) == {10: 3.0, 20: 2.0}


def _run(ppl: float, seed: int, tokens=(500, 5000)) -> dict:
    loss = math.log(ppl)
    return {"embedding": "lev", "seed": seed, "ppl": ppl, "loss": loss, "step": 10,
            "tokens_per_step": 100, "save_dir": "/nonexistent", "tokens": sum(tokens),
            "bucket_tokens": list(tokens), "bucket_loss_sum": [t * loss for t in tokens]}


def test_summary_reports_mean_std_paired_changes_and_whether_they_exceed_the_spread():
    spec = frequency_buckets(np.array([1, 1, 5, 5]), num_buckets=1)  # unseen + b1
    groups = {"lev": [_run(90, 1), _run(92, 2), _run(94, 3)],
              "tied": [_run(100, 1), _run(100, 2), _run(102, 3)]}
    s = summarize(groups, spec, min_bucket_tokens=1000)
    assert s["groups"]["lev"]["ppl_mean"] == pytest.approx(92)
    assert s["groups"]["lev"]["ppl_std"] == pytest.approx(2)
    vs = s["vs"]["tied"]
    assert vs["overall"] == pytest.approx(92 / (302 / 3) - 1)
    assert vs["paired"] == pytest.approx([-0.1, -0.08, 94 / 102 - 1])
    assert vs["exceeds_seed_spread"]  # |92 - 100.67| > max(2, 1.15)
    # 500 val tokens in "unseen": too few for a change; b1 has 5000.
    assert vs["buckets"]["unseen"] is None and vs["buckets"]["b1"] is not None


def test_a_difference_within_the_seed_spread_is_not_called_a_gain():
    spec = frequency_buckets(np.array([1, 1, 5, 5]), num_buckets=1)
    groups = {"lev": [_run(90, 1), _run(100, 2)], "tied": [_run(96, 1), _run(97, 2)]}
    assert not summarize(groups, spec)["vs"]["tied"]["exceeds_seed_spread"]


# ---------------------------------------------------------------- real checkpoints
def run_evaluate(nproc: int, log_dir: Path, *args: str, expect: int = 0) -> str:
    argv = ["-m", "pretrain.evaluate", *map(str, args)]
    codes = wait_ranks(spawn_ranks(nproc, argv, log_dir=log_dir), log_dir, timeout=300)
    logs = rank_logs(log_dir)
    assert codes == [expect] * nproc, f"exit codes {codes}\n{logs}"
    return logs


@pytest.fixture(scope="module")
def checkpoints(trained):
    """The directory holding the session's lev, tied_zero3 and lev_tp2 runs (conftest)."""
    for name in ("lev", "tied_zero3", "lev_tp2"):
        root = trained(name).parent
    return root


def trainer_final_val_loss(save_dir: Path) -> float:
    """The trainer's own full-split val loss at the last step (metrics.jsonl)."""
    records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in records if r.get("step") == STEPS and "val_loss" in r][-1]


@pytest.fixture(scope="module")
def lev_one_rank(checkpoints, shard_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_lev_1rank")
    run_evaluate(1, out / "logs", "--checkpoint", checkpoints / "lev", "--data-path", shard_dir,
                 "--output", out / "report", "--buckets", "3")
    return json.loads((out / "report" / "eval.json").read_text())


@pytest.fixture(scope="module")
def compared(checkpoints, shard_dir, tmp_path_factory):
    """LEV (tag dir given) vs tied ZeRO-3 on 2 ranks, micro-batch 3 (not the trained 2)."""
    out = tmp_path_factory.mktemp("eval_compare")
    run_evaluate(2, out / "logs", "--checkpoint", checkpoints / "lev" / f"step{STEPS:08d}",
                 "--compare", checkpoints / "tied_zero3", "--data-path", shard_dir,
                 "--output", out / "report", "--buckets", "3", "--micro-batch-size", "3")
    return out / "report"


multiproc = pytest.mark.multiproc


@multiproc
def test_bucket_token_counts_sum_to_every_val_token_once(lev_one_rank, shard_dir):
    run = lev_one_rank["runs"][0]
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    assert run["tokens"] == manifest["splits"]["val"]["samples"] * manifest["seq_length"]
    assert sum(b["tokens"] for b in run["buckets"]) == run["tokens"]
    assert [b["bucket"] for b in run["buckets"]] == ["unseen", "b1", "b2", "b3"]


@multiproc
def test_overall_loss_is_the_token_weighted_mean_of_bucket_losses(lev_one_rank):
    run = lev_one_rank["runs"][0]
    weighted = sum(b["loss"] * b["tokens"] for b in run["buckets"] if b["tokens"])
    assert run["loss"] == pytest.approx(weighted / run["tokens"], rel=1e-12)
    assert run["ppl"] == pytest.approx(math.exp(run["loss"]), rel=1e-12)


@multiproc
def test_one_and_two_ranks_give_the_same_numbers(lev_one_rank, compared):
    one = lev_one_rank["runs"][0]
    two = json.loads((compared / "eval.json").read_text())["runs"][0]
    assert (one["eval_world_size"], two["eval_world_size"]) == (1, 2)
    assert two["tokens"] == one["tokens"]
    assert two["bucket_tokens"] == one["bucket_tokens"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    for a, b in zip(one["buckets"], two["buckets"], strict=True):
        if a["tokens"]:
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-6), a["bucket"]


@multiproc
def test_compare_writes_the_side_by_side_table_tokens_to_target_and_pngs(compared):
    report = (compared / "report.md").read_text()
    assert "| ppl lev | ppl tied | lev vs tied |" in report
    assert "## Tokens to target" in report
    assert "final val loss" in report
    result = json.loads((compared / "eval.json").read_text())
    assert result["labels"] == ["lev", "tied"]
    vs = result["summary"]["vs"]["tied"]
    assert set(vs["buckets"]) == {"unseen", "b1", "b2", "b3"}
    lev, tied = result["runs"]
    assert vs["overall"] == pytest.approx(lev["ppl"] / tied["ppl"] - 1)
    assert lev["params"] > 0 and tied["params"] > 0
    for png in ("loss_curves.png", "bucket_ppl.png"):
        data = (compared / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@multiproc
def test_evaluation_matches_the_trainers_own_val_loss(lev_one_rank, checkpoints):
    # The trained weights were loaded (a fresh init would give ~log(384)).
    run = lev_one_rank["runs"][0]
    assert run["loss"] == pytest.approx(trainer_final_val_loss(checkpoints / "lev"), rel=1e-5)


@multiproc
def test_a_zero3_checkpoint_evaluates(compared, checkpoints):
    tied = json.loads((compared / "eval.json").read_text())["runs"][1]
    assert tied["zero_stage"] == 3 and tied["embedding"] == "tied"
    assert tied["loss"] == pytest.approx(trainer_final_val_loss(checkpoints / "tied_zero3"),
                                         rel=1e-5)


@multiproc
def test_a_tp2_checkpoint_evaluates_with_tp2(checkpoints, shard_dir, tmp_path, lev_one_rank):
    run_evaluate(2, tmp_path / "logs", "--checkpoint", checkpoints / "lev_tp2", "--data-path",
                 shard_dir, "--output", tmp_path / "report", "--buckets", "3")
    run = json.loads((tmp_path / "report" / "eval.json").read_text())["runs"][0]
    assert run["tensor_parallel"] == 2 and run["tokens"] == lev_one_rank["runs"][0]["tokens"]
    assert run["loss"] == pytest.approx(trainer_final_val_loss(checkpoints / "lev_tp2"), rel=1e-5)


@multiproc
def test_a_zero3_checkpoint_at_another_dp_size_is_refused_with_the_fix(checkpoints, shard_dir,
                                                                       tmp_path):
    logs = run_evaluate(1, tmp_path / "logs", "--checkpoint", checkpoints / "tied_zero3",
                        "--data-path", shard_dir, "--output", tmp_path / "report", expect=2)
    assert "ZeRO-3 checkpoint saved at DP=2" in logs and "world size 2" in logs


@multiproc
def test_shards_of_another_tokenizer_are_refused_before_any_work(checkpoints, shard_copy,
                                                                 tmp_path):
    manifest = json.loads((shard_copy / "manifest.json").read_text())
    trained_with = manifest["tokenizer"]["sha256"]
    manifest["tokenizer"]["sha256"] = "0" * 64  # shards made with another tokenizer.json
    (shard_copy / "manifest.json").write_text(json.dumps(manifest))
    logs = run_evaluate(1, tmp_path / "logs", "--checkpoint", checkpoints / "lev", "--data-path",
                        shard_copy, "--output", tmp_path / "report", expect=2)
    assert f"was trained with tokenizer sha256 {trained_with}" in logs
    assert f"tokenized with sha256 {'0' * 64}" in logs
    assert "evaluating" not in logs


@multiproc
def test_an_unwritable_output_is_refused_before_any_work(checkpoints, shard_dir, tmp_path):
    blocker = tmp_path / "report"
    blocker.write_text("a file where the report directory should go")
    logs = run_evaluate(1, tmp_path / "logs", "--checkpoint", checkpoints / "lev", "--data-path",
                        shard_dir, "--output", blocker, expect=2)
    assert f"--output {blocker} is not a writable directory" in logs
    assert "evaluating" not in logs
