"""LEV's gap to its isoparametric tied across body sizes, and what it predicts at 1.2B
(docs/LEV.md).

One point per trained body (a plan directory such as ``long@long-d64``, ``long``,
``long@long-d256``): the final subset loss of LEV and of tied-iso, each at its best grid lr
and averaged over the seeds both have. Three readings of the points:

* the gap against log(body) as a line: where it would cross zero;
* the gap as a power law in the body (only while LEV trails at every size): the gap left at
  the target body;
* the paper's v1 reading: LEV's effective-parameter multiplier at each size, from tied-iso's
  loss-vs-parameters power law through all sizes (:func:`effective_parameter_multiplier`).

The report says how the sizes' budgets compare: one token budget for all (tokens per
parameter fall as the body grows) or about the same tokens per parameter (``--steps``).

``axis="depth"`` reads the same points against the number of layers at one width (plan
directories such as ``long``, ``long@long-L4`` ... ``long@long-L16``): the gap as a power law
in depth, fitted over every seed's gap, extrapolated to the target config's depth with its
standard error and a 95 % prediction interval (:func:`fit_depth_trend`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from pretrain.study.trend import (
    arm_curves,
    best_lr_arms,
    effective_parameter_multiplier,
    least_squares,
    run_meta,
)

__all__ = ["DepthTrend", "SizePoint", "SizeTrend", "fit_depth_trend", "fit_size_trend",
           "size_points", "write_size_report"]


@dataclass(frozen=True, slots=True)
class SizePoint:
    """LEV and tied-iso at one body size (final subset losses, mean over shared seeds)."""

    plan_dir: str
    body: int
    lev_params: int
    iso_params: int
    lev_loss: float
    iso_loss: float
    seeds: int
    tokens: int
    layers: int = 0
    """``model.num_layers`` of the backbone (the depth axis)."""
    overhead: float = 0.0
    """LEV's parameters over the plain tied model's on the same backbone, minus 1."""
    seed_gaps: tuple[float, ...] = ()
    """Each shared seed's gap (LEV minus tied-iso), for fits that weigh the seed noise."""

    @property
    def gap(self) -> float:
        """LEV minus tied-iso, nats (> 0: LEV trails)."""
        return self.lev_loss - self.iso_loss


@dataclass(frozen=True, slots=True)
class SizeTrend:
    """The gap's trend with the body size, read two ways, at ``target_body``."""

    log_slope: float
    """d gap / d ln(body), nats (< 0: the gap shrinks as the body grows)."""
    zero_body: float | None
    """Body size at which the line in ln(body) reaches gap 0 (None: it never does)."""
    line_gap_at_target: float
    power_exponent: float | None
    """b in gap = a * body^b (None when some gap is <= 0)."""
    power_gap_at_target: float | None
    multipliers: list[float]
    """Effective-parameter multiplier of LEV at each point (the paper's v1 reading)."""


def fit_size_trend(points: list[SizePoint], target_body: int) -> SizeTrend:
    """Fit the gap against the body size (needs two sizes or more).

    Raises:
        ValueError: fewer than two distinct body sizes.
    """
    if len({p.body for p in points}) < 2:
        raise ValueError("the size trend needs at least two body sizes")
    xs = [math.log(p.body) for p in points]
    ys = [p.gap for p in points]
    slope, _ = least_squares(xs, ys)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    at = my + slope * (math.log(target_body) - mx)
    zero = math.exp(mx - my / slope) if slope < 0 < my else None
    exponent = power_gap = None
    if all(g > 0 for g in ys):
        exponent, _ = least_squares(xs, [math.log(g) for g in ys])
        power_gap = math.exp(statistics.fmean(math.log(g) for g in ys)
                             + exponent * (math.log(target_body) - mx))
    baseline = [(p.iso_params, p.iso_loss) for p in points]
    multipliers = [effective_parameter_multiplier(baseline, p.lev_params, p.lev_loss)
                   for p in points]
    return SizeTrend(slope, zero, at, exponent, power_gap, multipliers)


#: Two-sided 95 % quantiles of Student's t for 1..10 degrees of freedom (beyond 10 the
#: 10-degree value is used: slightly wide, never narrow).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


@dataclass(frozen=True, slots=True)
class DepthTrend:
    """The gap against depth at one width, as a power law ``gap = a * layers^b``."""

    exponent: float
    """b (< 0: the gap shrinks as the body deepens)."""
    exponent_se: float
    gap_at_target: float
    """The fitted gap at the target depth, nats."""
    interval: tuple[float, float]
    """95 % prediction interval of the gap at the target depth (one more seed's gap)."""
    log_slope: float
    """The other reading: d gap / d ln(layers), nats, fitted on the same gaps."""
    zero_layers: float | None
    """Depth at which that line reaches gap 0 (None: it never does)."""
    samples: int
    """Gaps fitted: one per seed and depth."""


def fit_depth_trend(points: list[SizePoint], target_layers: int) -> DepthTrend:
    """Fit every seed's gap against depth (needs three gaps or more over two depths or more,
    all positive: a power law cannot pass through a depth where LEV leads).

    The standard errors come from the residuals, so they carry both the seed noise and the
    misfit of the power law; the prediction interval is for one more seed at the target.

    Raises:
        ValueError: fewer than two depths or three gaps, or a gap <= 0.
    """
    pairs = [(p.layers, g) for p in points for g in (p.seed_gaps or (p.gap,))]
    if len({d for d, _ in pairs}) < 2 or len(pairs) < 3:
        raise ValueError("the depth trend needs at least two depths and three gaps")
    if any(g <= 0 for _, g in pairs):
        raise ValueError("LEV leads at some depth and seed: no power law in depth")
    xs = [math.log(d) for d, _ in pairs]
    ys = [math.log(g) for _, g in pairs]
    n = len(xs)
    slope, slope_se = least_squares(xs, ys)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    x0 = math.log(target_layers)
    centre = my + slope * (x0 - mx)
    resid = [y - my - slope * (x - mx) for x, y in zip(xs, ys, strict=True)]
    s = math.sqrt(sum(r * r for r in resid) / (n - 2)) if n > 2 else math.inf
    sxx = sum((x - mx) ** 2 for x in xs)
    half = _T95[min(n - 2, len(_T95)) - 1] * s * math.sqrt(1 + 1 / n + (x0 - mx) ** 2 / sxx)
    gaps = [g for _, g in pairs]
    line, _ = least_squares(xs, gaps)
    gm = statistics.fmean(gaps)
    zero = math.exp(mx - gm / line) if line < 0 < gm else None
    return DepthTrend(slope, slope_se, math.exp(centre),
                      (math.exp(centre - half), math.exp(centre + half)), line, zero, n)


def size_points(out: Path, plan_dirs: list[str], lev: str = "lev", baseline: str = "tied-iso",
                lr: float | None = None) -> dict[str, list[SizePoint]]:
    """corpus -> one :class:`SizePoint` per plan directory that has both arms on it, each
    arm at its best grid lr, or at ``lr`` (when only some sizes have a grid, one lr that
    every size has keeps the sizes comparable)."""
    from pretrain.config import config_from_dict
    from pretrain.training.params import count_all

    found: dict[str, list[SizePoint]] = {}
    for plan_dir in plan_dirs:
        arms = arm_curves(out / plan_dir / "results.jsonl")
        for corpus in sorted({c for c, _ in arms}):
            if lr is None:
                best = best_lr_arms(arms, corpus)
            else:
                best = {v: f"{v}@lr{lr:.0e}" for v in (lev, baseline)
                        if (corpus, f"{v}@lr{lr:.0e}") in arms}
            if lev not in best or baseline not in best:
                continue
            a, b = arms[(corpus, best[lev])], arms[(corpus, best[baseline])]
            seeds = sorted(set(a) & set(b))
            if not seeds:
                continue
            lev_cfg, iso_cfg = (config_from_dict(run_meta(r[seeds[0]])["config"]) for r in (a, b))
            counts = count_all(lev_cfg)
            lev_counts, iso_counts = counts["lev"], count_all(iso_cfg)["tied"]
            t = lev_cfg.train
            gaps = tuple(a[s]["final_subset_val_loss"] - b[s]["final_subset_val_loss"]
                         for s in seeds)
            found.setdefault(corpus, []).append(SizePoint(
                plan_dir, lev_counts.backbone, lev_counts.total, iso_counts.total,
                statistics.fmean(a[s]["final_subset_val_loss"] for s in seeds),
                statistics.fmean(b[s]["final_subset_val_loss"] for s in seeds), len(seeds),
                t.train_steps * t.global_batch_size * lev_cfg.model.seq_length,
                lev_cfg.model.num_layers, lev_counts.total / counts["tied"].total - 1, gaps))
    return found


#: Tokens per parameter within this ratio of each other count as "the same": step counts
#: must divide into whole evaluation intervals, so a budget cannot be matched exactly.
SAME_BUDGET_RATIO = 1.25


def _budget_sentence(points: list[SizePoint]) -> str:
    """How the sizes' training budgets compare: the same tokens, or the same per parameter."""
    per_param = [p.tokens / p.lev_params for p in points]
    if len({p.tokens for p in points}) == 1:
        return (f"Every size sees the same {points[0].tokens:,} tokens, so tokens per "
                f"parameter fall as the body grows.")
    if max(per_param) <= SAME_BUDGET_RATIO * min(per_param):
        return (f"Every size sees about the same tokens per parameter "
                f"({min(per_param):.2f}-{max(per_param):.2f}).")
    return "The sizes see different tokens per parameter (see the table)."


def _depth_section(points: list[SizePoint], target_layers: int) -> list[str]:
    """One corpus's depth table and its power-law fit, as Markdown lines."""
    lines = ["| plan | layers | body | LEV overhead | seeds | LEV loss | tied-iso loss | "
             "gap (nats) | each seed's gap |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {p.plan_dir} | {p.layers} | {p.body:,} | {p.overhead:+.2%} | {p.seeds} | "
              f"{p.lev_loss:.3f} | {p.iso_loss:.3f} | {p.gap:+.3f} | "
              f"{', '.join(f'{g:+.3f}' for g in p.seed_gaps)} |" for p in points]
    try:
        trend = fit_depth_trend(points, target_layers)
    except ValueError as exc:
        return [*lines, "", f"No depth trend: {exc}.", ""]
    low, high = trend.interval
    zero = (f"reaches 0 at {trend.zero_layers:,.0f} layers" if trend.zero_layers
            else "never reaches 0")
    return [*lines, "",
            f"- Power law over {trend.samples} gaps (one per seed and depth): gap ~ "
            f"layers^{trend.exponent:.2f} ± {trend.exponent_se:.2f} (standard error); at "
            f"{target_layers} layers {trend.gap_at_target:+.3f} nats, 95 % prediction "
            f"interval {low:+.3f} to {high:+.3f} (a power law cannot cross zero: it says "
            f"how small the gap gets, not whether LEV overtakes).",
            f"- Line in ln(layers): {trend.log_slope:+.4f} nats per e-fold of depth; {zero}.",
            ""]


def write_size_report(out: Path, plan_dirs: list[str], results: Path,
                      target_config: str = "pretrain/configs/lev_1b2.yaml",
                      lr: float | None = None, axis: str = "body") -> Path:
    """``results/size.md``: the points, the two extrapolations and the multipliers (arms at
    their best grid lr, or all at ``lr``); with ``axis="depth"``, ``results/depth.md``: the
    gap against the number of layers, extrapolated to the target config's depth."""
    from pretrain.config import load_config
    from pretrain.training.params import count_all

    if axis == "depth":
        return _write_depth_report(out, plan_dirs, results, target_config, lr)
    target = count_all(load_config(target_config))["lev"].backbone
    lines = ["# LEV's gap to tied-iso across body sizes", "",
             f"From {', '.join(f'`{d}`' for d in plan_dirs)} under `{out}`: final subset loss "
             f"(nats), each arm "
             f"{'at its best grid lr' if lr is None else f'at lr {lr:g}'}, mean over the "
             f"seeds both arms have. "
             f"Extrapolated to the body of `{target_config}` ({target:,} parameters) "
             f"(pretrain/study/size.py).", ""]
    results.mkdir(parents=True, exist_ok=True)
    for corpus, points in size_points(out, plan_dirs, lr=lr).items():
        points.sort(key=lambda p: p.body)
        lines += [f"## {corpus}", "", _budget_sentence(points), "",
                  "| plan | body | LEV params | tokens / param | seeds | "
                  "LEV loss | tied-iso loss | gap (nats) | effective multiplier |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        try:
            trend = fit_size_trend(points, target)
        except ValueError as exc:
            lines += [f"| {p.plan_dir} | {p.body:,} | {p.lev_params:,} | "
                      f"{p.tokens / p.lev_params:.1f} | {p.seeds} | {p.lev_loss:.3f} | "
                      f"{p.iso_loss:.3f} | {p.gap:+.3f} | - |" for p in points]
            lines += ["", f"No trend: {exc}.", ""]
            continue
        for p, m in zip(points, trend.multipliers, strict=True):
            lines.append(f"| {p.plan_dir} | {p.body:,} | {p.lev_params:,} | "
                         f"{p.tokens / p.lev_params:.1f} | {p.seeds} | {p.lev_loss:.3f} | "
                         f"{p.iso_loss:.3f} | {p.gap:+.3f} | {m:.2f}x |")
        zero = (f"reaches 0 at a body of {trend.zero_body:,.0f}" if trend.zero_body
                else "never reaches 0")
        lines += ["", f"- Line in ln(body): {trend.log_slope:+.4f} nats per e-fold of the body; "
                      f"{zero}; at the target body {trend.line_gap_at_target:+.3f} nats."]
        if trend.power_exponent is not None:
            lines.append(f"- Power law: gap ~ body^{trend.power_exponent:.3f}; at the target "
                         f"body {trend.power_gap_at_target:+.3f} nats (LEV still behind).")
        else:
            lines.append("- Power law: not fitted (LEV leads at some size).")
        lines += ["- Effective multiplier > 1: LEV is worth more than its parameters (the "
                  "paper's v1: 1.47-2.11x at 200M-1.2B); < 1: less.", ""]
    path = results / "size.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_depth_report(out: Path, plan_dirs: list[str], results: Path, target_config: str,
                        lr: float | None) -> Path:
    from pretrain.config import load_config

    target_layers = load_config(target_config).model.num_layers
    lines = ["# LEV's gap to tied-iso against depth", "",
             f"From {', '.join(f'`{d}`' for d in plan_dirs)}: final subset loss (nats), each "
             f"arm {'at its best grid lr' if lr is None else f'at lr {lr:g}'}, mean over the "
             f"seeds both arms have; LEV overhead = LEV's parameters over the plain tied "
             f"model's on the same backbone. Extrapolated to the depth of `{target_config}` "
             f"({target_layers} layers) (pretrain/study/size.py).", ""]
    results.mkdir(parents=True, exist_ok=True)
    for corpus, points in size_points(out, plan_dirs, lr=lr).items():
        points.sort(key=lambda p: p.layers)
        lines += [f"## {corpus}", "", _budget_sentence(points), "",
                  *_depth_section(points, target_layers)]
    path = results / "depth.md"
    path.write_text("\n".join(lines) + "\n")
    return path
