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
