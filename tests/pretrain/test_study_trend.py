"""The gap-over-training fit: LEV's advantage grows, shrinks or holds, with its uncertainty."""

from __future__ import annotations

import json
import math
import random

import pytest

from pretrain.study.trend import arm_curves, best_lr_arms, fit_gap_trend, gap_curve

STEPS = list(range(100, 3001, 100))


def _curve(gap_at, noise: float = 0.0, seed: int = 0) -> tuple[dict, dict]:
    """A baseline loss curve and a LEV curve ``gap_at(step)`` nats above it (+ noise)."""
    rng = random.Random(seed)
    base = {s: 4.0 + 2.0 * math.exp(-s / 500) for s in STEPS}
    lev = {s: base[s] + gap_at(s) + rng.gauss(0.0, noise) for s in STEPS}
    return lev, base


def test_a_gap_that_widens_in_levs_favour_grows():
    trend = fit_gap_trend([_curve(lambda s: -0.05 * s / 1000, noise=0.002, seed=k)
                           for k in range(2)])
    assert trend.verdict == "grows"
    assert trend.slope_per_1k == pytest.approx(0.05, abs=0.005)
    assert trend.final_gap == pytest.approx(-0.15, abs=0.01)


def test_a_lead_that_decays_shrinks():
    trend = fit_gap_trend([_curve(lambda s: -0.2 + 0.06 * s / 1000, noise=0.002)])
    assert trend.verdict == "shrinks"
    assert trend.slope_per_1k == pytest.approx(-0.06, abs=0.005)


def test_a_constant_gap_under_noise_holds():
    trend = fit_gap_trend([_curve(lambda s: 0.1, noise=0.01, seed=k) for k in range(3)])
    assert trend.verdict == "holds"
    assert abs(trend.slope_per_1k) < 2 * trend.stderr_per_1k


def test_only_the_second_half_of_training_is_fitted():
    # LEV leads early and loses ground until halfway, then its deficit stays put: flat.
    trend = fit_gap_trend([_curve(lambda s: min(s, 1500) / 1000 * 0.1 - 0.1, noise=0.001)])
    assert trend.window == (1500, 3000)
    assert trend.verdict == "holds"


def test_seeds_that_disagree_widen_the_uncertainty():
    agree = fit_gap_trend([_curve(lambda s: -0.02 * s / 1000, 0.001, k) for k in range(2)])
    disagree = fit_gap_trend([_curve(lambda s: -0.02 * s / 1000, 0.001, 0),
                              _curve(lambda s: +0.02 * s / 1000, 0.001, 1)])
    assert agree.verdict == "grows"
    assert disagree.verdict == "holds"
    assert disagree.stderr_per_1k > 5 * agree.stderr_per_1k


def test_too_few_evaluations_in_the_window_are_refused():
    lev, base = {100: 5.0, 200: 4.0}, {100: 5.1, 200: 4.2}
    with pytest.raises(ValueError, match="train.eval_interval"):
        fit_gap_trend([(lev, base)])


def test_the_gap_is_taken_only_where_both_curves_were_evaluated():
    assert gap_curve({100: 5.0, 200: 4.5}, {200: 4.0, 300: 3.9}) == {200: 0.5}


def test_each_variant_is_compared_at_its_own_best_grid_lr(tmp_path):
    rows = [{"corpus": "c", "variant": "tied-iso", "arm": f"tied-iso@lr{lr}", "seed": 1,
             "val_curve": [[100, 5.0], [200, final]]}
            for lr, final in (("1e-03", 4.2), ("2e-03", 4.1), ("5e-04", 4.4))]
    rows.append({"corpus": "c", "variant": "lev", "arm": "lev@lr1e-03", "seed": 1,
                 "error": "failed"})
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    arms = arm_curves(results)
    assert best_lr_arms(arms, "c") == {"tied-iso": "tied-iso@lr2e-03"}


def test_a_model_that_matches_a_twice_larger_baseline_is_worth_two_times_its_parameters():
    from pretrain.study.trend import effective_parameter_multiplier

    def tied(n: float) -> float:
        return 10.0 * n ** -0.1

    points = [(1e6, tied(1e6)), (4e6, tied(4e6)), (16e6, tied(16e6))]
    assert effective_parameter_multiplier(points, 3e6, tied(6e6)) == pytest.approx(2.0)
    assert effective_parameter_multiplier(points, 3e6, tied(1.5e6)) == pytest.approx(0.5)


def test_a_multiplier_needs_a_baseline_that_improves_with_size():
    from pretrain.study.trend import effective_parameter_multiplier

    with pytest.raises(ValueError, match="two model sizes"):
        effective_parameter_multiplier([(1e6, 4.0)], 1e6, 3.9)
    with pytest.raises(ValueError, match="does not fall"):
        effective_parameter_multiplier([(1e6, 4.0), (2e6, 4.1)], 1e6, 3.9)
