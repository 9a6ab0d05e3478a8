"""LEV's gap to its isoparametric tied across body sizes, and what it predicts at 1.2B
(issue 20, item 3).

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

__all__ = ["SizePoint", "SizeTrend", "fit_size_trend", "size_points", "write_size_report"]


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
            lev_counts, iso_counts = count_all(lev_cfg)["lev"], count_all(iso_cfg)["tied"]
            t = lev_cfg.train
            found.setdefault(corpus, []).append(SizePoint(
                plan_dir, lev_counts.backbone, lev_counts.total, iso_counts.total,
                statistics.fmean(a[s]["final_subset_val_loss"] for s in seeds),
                statistics.fmean(b[s]["final_subset_val_loss"] for s in seeds), len(seeds),
                t.train_steps * t.global_batch_size * lev_cfg.model.seq_length))
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


def write_size_report(out: Path, plan_dirs: list[str], results: Path,
                      target_config: str = "pretrain/configs/lev_1b2.yaml",
                      lr: float | None = None) -> Path:
    """``results/size.md``: the points, the two extrapolations and the multipliers (arms at
    their best grid lr, or all at ``lr``)."""
    from pretrain.config import load_config
    from pretrain.training.params import count_all

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
