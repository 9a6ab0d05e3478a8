"""The study/compare runner's plans: what a seed changes, what a variant is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from megatron_patches.lev_embedding import LEVEmbedding
from pretrain.config import load_config
from pretrain.data.sampler import SampleOrder
from pretrain.study.runner import REPO, plan_runs
from tests.workers.lev_cases import tiny_transformer_config


def _config(run):
    return load_config(REPO / "pretrain/configs/tiny_lev.yaml", run.overrides)


def test_a_seed_sets_both_the_init_seed_and_the_data_order_seed():
    runs = [r for r in plan_runs("confirm", ["wordnet"]) if r.variant == "tied"]
    configs = [_config(r) for r in runs]
    assert [r.seed for r in runs] == [1, 2, 3]
    assert [c.train.seed for c in configs] == [1, 2, 3]
    assert [c.data.shuffle_seed for c in configs] == [1, 2, 3]


def test_different_seeds_give_different_lev_weights_and_sample_orders():
    one, two = (_config(r) for r in plan_runs("confirm", ["wordnet"], seeds=[1, 2])
                if r.variant == "lev")
    levs = [LEVEmbedding(tiny_transformer_config(), vocab_size=300, num_coords=2, seed_dim=4,
                         grid_size=5, num_modes=8, init_seed=c.train.seed) for c in (one, two)]
    assert not torch.equal(levs[0].codebooks, levs[1].codebooks)
    orders = [SampleOrder(1000, c.data.shuffle_seed).sample_ids(0, 1000) for c in (one, two)]
    assert sorted(orders[0].tolist()) == sorted(orders[1].tolist()) == list(range(1000))
    assert not np.array_equal(orders[0], orders[1])


def test_every_run_of_a_comparison_shares_the_shape_and_differs_only_by_variant():
    runs = plan_runs("compare", ["shakespeare"], seeds=[1])
    assert [r.variant for r in runs] == ["lev", "tied", "tied-iso", "untied"]
    configs = {r.variant: _config(r) for r in runs}
    assert {c.model.embedding for c in configs.values()} == {"lev", "tied", "untied"}
    assert len({(c.model.hidden_size, c.model.num_layers, c.train.train_steps)
                for c in configs.values()}) == 1
    iso = next(r for r in runs if r.variant == "tied-iso")
    assert iso.iso_reference == next(r for r in runs if r.variant == "lev").overrides


def test_combined_variants_are_the_union_of_their_parts():
    (run, *_), = [plan_runs("confirm", ["shakespeare"], "lev+lr30+s16", seeds=[1])]
    config = _config(run)
    assert config.lev.lr_mult == 30 and config.lev.seed_dim == 16
    with pytest.raises(SystemExit, match="unknown variant"):
        plan_runs("confirm", ["shakespeare"], "lev+nope")


def _evaluated(ppl: float, seed: int, embedding: str, params: int) -> dict:
    import math

    loss = math.log(ppl)
    tokens = (0, 4000, 4000)
    return {"embedding": embedding, "seed": seed, "ppl": ppl, "loss": loss, "step": 10,
            "tokens_per_step": 100, "save_dir": "/nonexistent", "tokens": sum(tokens),
            "params": params, "bucket_tokens": list(tokens),
            "bucket_loss_sum": [t * (loss + 0.1 * k) for k, t in enumerate(tokens)]}


def test_the_study_page_tabulates_sweep_and_confirmation_from_the_evaluations(tmp_path):
    from pretrain.evaluation.buckets import frequency_buckets
    from pretrain.evaluation.report import write_report
    from pretrain.study.report import write_study_report

    spec = frequency_buckets(np.array([0, 1, 1, 9, 9]), num_buckets=2)
    out = tmp_path / "runs"
    for corpus in ("shakespeare", "wordnet"):
        write_report(out / "sweep" / corpus / "report",
                     {"lev": [_evaluated(90, 1, "lev", 1000)],
                      "tied": [_evaluated(100, 1, "tied", 990)],
                      "lev-lr30": [_evaluated(80, 1, "lev", 1000)]}, spec, "data")
        write_report(out / "confirm" / corpus / "report",
                     {"lev-lr30": [_evaluated(p, s, "lev", 1000) for s, p in ((1, 80), (2, 82))],
                      "tied": [_evaluated(p, s, "tied", 990) for s, p in ((1, 100), (2, 101))],
                      "tied-iso": [_evaluated(p, s, "tied", 1001) for s, p in ((1, 99), (2, 98))]},
                     spec, "data")
    page = write_study_report(out, tmp_path / "results").read_text()
    assert "| lev-lr30 | 1,000 | 80.00 | -20.0 % |" in page
    assert "| tied-iso | **" in page and "yes" in page
    assert "lev-lr30 reaches" in page or "no val_loss records" in page
    assert (tmp_path / "results" / "wordnet_small" / "report.md").is_file()
    assert "| wordnet | small (d=160, 3 layers) | lev-lr30 | 2 | -19.4 % | -17.8 % |" in page


def test_your_own_shards_set_the_vocabulary_and_sequence_length_of_the_comparison(shard_dir):
    from pretrain.study.runner import data_overrides

    # The fixture's tokenizer has 384 ids (a multiple of 128) and seq_length 32.
    assert data_overrides(shard_dir) == ["model.vocab_size=384", "model.seq_length=32"]


@pytest.mark.multiproc
def test_the_runner_resumes_a_half_finished_study_without_retraining_finished_runs(
        shard_dir, tmp_path, monkeypatch):
    import json

    from pretrain.study import runner

    monkeypatch.setitem(runner.EXTERNAL_DATA, "fixture", shard_dir)
    small = [*runner.data_overrides(shard_dir), "train.train_steps=4", "train.eval_interval=2",
             "train.eval_samples=8", "train.micro_batch_size=4", "train.global_batch_size=4",
             "optimizer.warmup_steps=1", "checkpoint.save_interval=2", "checkpoint.keep_last=2"]
    runs = [r for r in plan_runs("long", ["fixture"], seeds=[1]) if r.variant in ("lev", "tied")]
    for r in runs:
        r.overrides += small
    lev, tied = runs
    runner.run_plan(tmp_path, runs, jobs=1, nproc=1, evaluate=False)
    # Interrupt tied after its step-2 checkpoint: drop the final tag, as a kill would.
    tied_dir = runner.save_dir(tmp_path, tied)
    (tied_dir / "latest").write_text("step00000002")
    for path in (tied_dir / "step00000004").iterdir():
        path.unlink()
    (tied_dir / "step00000004").rmdir()
    lev_log = (runner.save_dir(tmp_path, lev) / "train.log").read_text()

    runner.run_plan(tmp_path, runs, jobs=1, nproc=1, evaluate=False)

    assert (runner.save_dir(tmp_path, lev) / "train.log").read_text() == lev_log  # untouched
    assert "resumed from" in (tied_dir / "train.log").read_text()
    lines = [json.loads(x) for x in (tmp_path / "long" / "results.jsonl").read_text().splitlines()]
    assert [(x["arm"], x["trained"]) for x in lines] == [("lev", True), ("tied", True),
                                                         ("tied", True)]
    assert [step for step, _ in lines[-1]["val_curve"]] == [2, 4]


def test_runs_of_another_shape_never_share_a_directory_with_the_plans_own():
    from pathlib import Path

    from pretrain.study.runner import save_dir

    own = plan_runs("long", ["shakespeare"], seeds=[1])[0]
    wider = plan_runs("long", ["shakespeare"], seeds=[1], shape="long-d256")[0]
    same = plan_runs("long", ["shakespeare"], seeds=[1], shape="long")[0]
    assert (own.name, wider.name) == ("shakespeare/lev/seed1", "shakespeare/lev/seed1")
    assert save_dir(Path("o"), own) == save_dir(Path("o"), same) == Path("o/long/shakespeare/lev/seed1")
    assert save_dir(Path("o"), wider) == Path("o/long@long-d256/shakespeare/lev/seed1")
    assert "model.hidden_size=256" in wider.overrides


def test_another_step_count_gets_its_own_directory_and_evaluates_its_final_step():
    from pathlib import Path

    from pretrain.study.runner import eval_interval_for, save_dir

    short = plan_runs("long", ["shakespeare"], seeds=[1], shape="long-d64", steps=264)[0]
    assert save_dir(Path("o"), short) == Path("o/long@long-d64@264steps/shakespeare/lev/seed1")
    assert {"train.train_steps=264", "train.eval_interval=8"} <= set(short.overrides)
    # The shape's own step count is the shape's own run: same directory, same overrides.
    own = plan_runs("long", ["shakespeare"], seeds=[1], steps=3000)[0]
    assert own.plan_dir == "long" and own.overrides == plan_runs(
        "long", ["shakespeare"], seeds=[1])[0].overrides
    assert [eval_interval_for(n) for n in (3000, 660, 264, 1200)] == [100, 22, 8, 40]


def test_a_step_count_that_cannot_end_on_an_evaluation_is_refused_with_counts_that_can():
    from pretrain.study.runner import check_steps

    assert check_steps(264) is None
    assert check_steps(661) == ("--steps 661: no evaluation interval divides it into 15-60 "
                                "evaluations, so the final model would not be evaluated; use "
                                "660 or 663")
    assert check_steps(0) == "--steps 0 must be >= 1"


def test_the_long_plans_lev_arms_keep_the_output_norm_they_were_measured_with():
    """tiny_lev.yaml turns lev.output_norm on; the long plan's published LEV had it off."""
    from pretrain.config import load_config

    runs = {r.variant: r for r in plan_runs("long", ["shakespeare"], seeds=[1])}
    runs.update({r.variant: r for r in plan_runs("long", ["shakespeare"], "lev-norm", [1])})
    assert load_config("pretrain/configs/tiny_lev.yaml").lev.output_norm
    assert not load_config("pretrain/configs/tiny_lev.yaml", runs["lev"].overrides).lev.output_norm
    assert load_config("pretrain/configs/tiny_lev.yaml", runs["lev-norm"].overrides).lev.output_norm
