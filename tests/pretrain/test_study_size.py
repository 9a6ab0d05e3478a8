"""The gap's trend across body sizes (pretrain/study/size.py) on hand-made points."""

from __future__ import annotations

import math

import pytest

from pretrain.study.size import SizePoint, fit_size_trend


def point(body: float, gap: float, *, iso_params: float | None = None,
          lev_worth: float = 1.0) -> SizePoint:
    """A size point whose tied-iso follows loss = 10 N^-0.1 and whose LEV reaches the loss
    of a tied model ``lev_worth`` times its size, plus ``gap`` where that is not given."""
    n = iso_params or 3 * body
    iso = 10 * n ** -0.1
    lev = 10 * (lev_worth * n) ** -0.1 if lev_worth != 1.0 else iso + gap
    return SizePoint("p", int(body), int(n), int(n), lev, iso, 1, 6_000_000)


def test_a_gap_linear_in_log_body_reaches_zero_where_the_line_says():
    points = [point(b, 0.3 - 0.05 * math.log(b / 1e5)) for b in (1e5, 1e6, 1e7)]
    trend = fit_size_trend(points, target_body=10**9)
    assert trend.log_slope == pytest.approx(-0.05)
    assert trend.zero_body == pytest.approx(1e5 * math.exp(6), rel=1e-6)
    assert trend.line_gap_at_target == pytest.approx(0.3 - 0.05 * math.log(1e4))


def test_a_power_law_gap_is_extrapolated_along_its_exponent():
    points = [point(b, 0.2 * (b / 1e5) ** -0.5) for b in (1e5, 4e5, 3.2e6)]
    trend = fit_size_trend(points, target_body=10**9)
    assert trend.power_exponent == pytest.approx(-0.5)
    assert trend.power_gap_at_target == pytest.approx(0.2 * (1e4) ** -0.5)


def test_no_power_law_once_lev_leads_at_some_size():
    trend = fit_size_trend([point(1e5, 0.1), point(1e6, -0.05)], target_body=10**9)
    assert trend.power_exponent is None and trend.power_gap_at_target is None
    assert trend.zero_body is not None and 1e5 < trend.zero_body < 1e6


def test_a_growing_gap_never_reaches_zero():
    assert fit_size_trend([point(1e5, 0.1), point(1e6, 0.2)], 10**9).zero_body is None


def test_the_multiplier_is_what_the_tied_fit_says_lev_is_worth():
    points = [point(b, 0.0, lev_worth=w) for b, w in ((1e5, 0.5), (1e6, 2.0))]
    assert fit_size_trend(points, 10**9).multipliers == pytest.approx([0.5, 2.0])


def test_one_body_size_is_no_trend():
    with pytest.raises(ValueError, match="at least two body sizes"):
        fit_size_trend([point(1e5, 0.1), point(1e5, 0.2)], 10**9)


def test_the_report_says_when_every_size_saw_the_same_tokens():
    from pretrain.study.size import _budget_sentence

    points = [point(1e5, 0.1), point(1e6, 0.1)]  # 6M tokens each
    assert _budget_sentence(points).startswith("Every size sees the same 6,000,000 tokens")


def test_the_report_says_when_every_size_saw_the_same_tokens_per_parameter():
    import dataclasses

    from pretrain.study.size import _budget_sentence

    small, large = point(1e5, 0.1), point(1e6, 0.1)
    small = dataclasses.replace(small, tokens=small.lev_params * 2)
    large = dataclasses.replace(large, tokens=int(large.lev_params * 2.2))
    assert _budget_sentence([small, large]) == (
        "Every size sees about the same tokens per parameter (2.00-2.20).")
    far = dataclasses.replace(large, tokens=large.lev_params * 20)
    assert "different tokens per parameter" in _budget_sentence([small, far])


def depth_point(layers: int, *gaps: float) -> SizePoint:
    """A depth point: LEV and tied-iso at ``layers`` with one gap per seed."""
    mean = sum(gaps) / len(gaps)
    return SizePoint(f"L{layers}", layers * 200_000, 10**6, 10**6, 4.0 + mean, 4.0,
                     len(gaps), 6_000_000, layers=layers, seed_gaps=gaps)


def test_a_power_law_in_depth_is_extrapolated_along_its_exponent():
    from pretrain.study.size import fit_depth_trend

    points = [depth_point(d, 0.28 * (d / 2) ** -0.5) for d in (2, 4, 8, 16)]
    trend = fit_depth_trend(points, target_layers=22)
    assert trend.exponent == pytest.approx(-0.5)
    assert trend.gap_at_target == pytest.approx(0.28 * 11 ** -0.5)
    assert trend.interval == pytest.approx((trend.gap_at_target, trend.gap_at_target))


def test_the_depth_fit_weighs_every_seed_so_seed_noise_widens_the_interval():
    from pretrain.study.size import fit_depth_trend

    exact = [depth_point(d, 0.28 * (d / 2) ** -0.5) for d in (2, 4, 8)]
    noisy = [depth_point(d, 0.28 * (d / 2) ** -0.5 * 1.1, 0.28 * (d / 2) ** -0.5 / 1.1)
             for d in (2, 4, 8)]
    assert fit_depth_trend(noisy, 22).samples == 6
    low, high = fit_depth_trend(noisy, 22).interval
    assert low < fit_depth_trend(exact, 22).gap_at_target < high
    assert fit_depth_trend(noisy, 22).exponent == pytest.approx(-0.5)


def test_no_power_law_in_depth_once_lev_leads_at_some_depth_and_seed():
    from pretrain.study.size import fit_depth_trend

    with pytest.raises(ValueError, match="LEV leads"):
        fit_depth_trend([depth_point(2, 0.2, 0.1), depth_point(8, 0.05, -0.01)], 22)


def test_one_depth_is_no_depth_trend():
    from pretrain.study.size import fit_depth_trend

    with pytest.raises(ValueError, match="at least two depths"):
        fit_depth_trend([depth_point(8, 0.1, 0.2, 0.15)], 22)


def test_the_depth_line_in_log_layers_reaches_zero_where_it_says():
    from pretrain.study.size import fit_depth_trend

    points = [depth_point(d, 0.3 - 0.1 * math.log(d / 2)) for d in (2, 4, 8)]
    trend = fit_depth_trend(points, 22)
    assert trend.log_slope == pytest.approx(-0.1)
    assert trend.zero_layers == pytest.approx(2 * math.exp(3))


def test_the_depth_report_reads_published_lines_whose_runs_are_gone(tmp_path):
    """Results lines carry their resolved config, so the report needs no checkpoint."""
    import json

    from pretrain.config import config_to_dict, load_config
    from pretrain.study.size import write_size_report

    def line(plan: str, variant: str, seed: int, layers: int, loss: float) -> str:
        file = "tiny_tied.yaml" if variant == "tied-iso" else "tiny_lev.yaml"
        cfg = load_config(f"pretrain/configs/{file}", [f"model.num_layers={layers}"])
        return json.dumps({"plan": plan, "corpus": "c", "variant": variant,
                           "arm": f"{variant}@lr1e-03", "seed": seed, "lr": 1e-3,
                           "save_dir": str(tmp_path / "gone" / plan / variant / str(seed)),
                           "final_subset_val_loss": loss, "val_curve": [[100, loss]],
                           "config": config_to_dict(cfg)})

    for plan, layers, gaps in (("long", 2, (0.3, 0.26)), ("long@long-L8", 8, (0.14, 0.12))):
        (tmp_path / plan).mkdir()
        (tmp_path / plan / "results.jsonl").write_text("\n".join(
            line(plan, v, seed, layers, 4.0 + (gap if v == "lev" else 0.0))
            for seed, gap in zip((1, 2), gaps) for v in ("lev", "tied-iso")) + "\n")
    report = write_size_report(tmp_path, ["long", "long@long-L8"], tmp_path / "out",
                               lr=1e-3, axis="depth").read_text()
    assert "| long | 2 |" in report and "| long@long-L8 | 8 |" in report
    assert "+0.300, +0.260" in report and "at 22 layers" in report
