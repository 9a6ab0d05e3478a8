"""Does LEV's gap to a baseline grow, hold or shrink over training?

The paper's claim is a trend: LEV's gain over tied *grows* with training. A final number
cannot show that, so every long-horizon run saves its validation curve (the fixed subset,
every ``train.eval_interval`` steps) and this module fits the gap's slope over the second
half of training:

    gap(t) = loss_LEV(t) - loss_baseline(t)      (nats; negative: LEV is better)
    advantage(t) = -gap(t);  slope = d advantage / d (1000 steps), least squares

With several seeds the curves are paired by seed (a seed sets init and data order for
both arms), each pair's slope is fitted, and the uncertainty is the larger of the
regression's standard error on the mean gap curve and the seeds' standard error. The
verdict is ``grows`` when the slope exceeds twice its uncertainty, ``shrinks`` when it is
below minus twice, ``holds`` otherwise. The subset is the same at every evaluation, so
neighbouring points share their sampling noise: the regression error alone is optimistic,
which is why a second seed's spread is part of the uncertainty.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GapTrend", "arm_curves", "best_lr_arms", "effective_parameter_multiplier", "least_squares", "run_meta",
           "fit_gap_trend", "gap_curve", "write_trend_report"]

Curve = dict[int, float]


@dataclass(frozen=True, slots=True)
class GapTrend:
    """The fitted trend of LEV's advantage (baseline loss - LEV loss) over one window."""

    final_gap: float
    """Mean over seeds of loss_LEV - loss_baseline at the last common step (nats)."""
    slope_per_1k: float
    """d advantage / d 1000 steps over the window (nats); > 0: LEV gains ground."""
    stderr_per_1k: float
    """Uncertainty of the slope (the larger of regression and seed standard errors)."""
    seeds: int
    window: tuple[int, int]
    """First and last step fitted."""

    @property
    def verdict(self) -> str:
        """``grows`` / ``shrinks`` / ``holds``: LEV's advantage, beyond 2 standard errors."""
        if self.slope_per_1k > 2 * self.stderr_per_1k:
            return "grows"
        if self.slope_per_1k < -2 * self.stderr_per_1k:
            return "shrinks"
        return "holds"

    def sentence(self) -> str:
        """One plain line for a report."""
        side = "leads" if self.final_gap < 0 else "trails"
        direction = _MEANING[self.verdict]
        return (f"LEV {side} by {abs(self.final_gap):.3f} nats at step {self.window[1]}; over "
                f"steps {self.window[0]}-{self.window[1]} its advantage changes by "
                f"{self.slope_per_1k:+.3f} ± {self.stderr_per_1k:.3f} nats per 1000 steps "
                f"({self.verdict}: {direction}; {self.seeds} seed(s))")


_MEANING = {"grows": "LEV gains ground", "shrinks": "LEV loses ground",
            "holds": "no trend beyond the noise"}


def gap_curve(lev: Curve, baseline: Curve) -> Curve:
    """loss_LEV - loss_baseline at every step both curves have."""
    return {s: lev[s] - baseline[s] for s in sorted(set(lev) & set(baseline))}


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and its standard error."""
    n = len(xs)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    if n < 3:
        return slope, math.inf
    resid = [y - my - slope * (x - mx) for x, y in zip(xs, ys, strict=True)]
    return slope, math.sqrt(sum(r * r for r in resid) / (n - 2) / sxx)


def fit_gap_trend(pairs: list[tuple[Curve, Curve]], from_fraction: float = 0.5) -> GapTrend:
    """Fit LEV's advantage over the last ``1 - from_fraction`` of training.

    Args:
        pairs: (LEV curve, baseline curve) per seed, each ``{step: val_loss}``.
        from_fraction: the window starts at this fraction of the last common step
            (0.5: the second half of training).

    Raises:
        ValueError: no pair, or fewer than 3 common steps in the window.
    """
    if not pairs:
        raise ValueError("no (LEV, baseline) curve pair to fit")
    gaps = [gap_curve(lev, base) for lev, base in pairs]
    common = sorted(set.intersection(*(set(g) for g in gaps)))
    if not common:
        raise ValueError("the curves share no step")
    last = common[-1]
    window = [s for s in common if s >= from_fraction * last]
    if len(window) < 3:
        raise ValueError(f"{len(window)} evaluations in the window {from_fraction * last:.0f}-"
                         f"{last}; evaluate more often (train.eval_interval)")
    xs = [s / 1000 for s in window]
    mean_adv = [-statistics.fmean(g[s] for g in gaps) for s in window]
    slope, reg_se = least_squares(xs, mean_adv)
    seed_slopes = [least_squares(xs, [-g[s] for s in window])[0] for g in gaps]
    seed_se = (statistics.stdev(seed_slopes) / math.sqrt(len(gaps))) if len(gaps) > 1 else 0.0
    return GapTrend(final_gap=-mean_adv[-1], slope_per_1k=slope,
                    stderr_per_1k=max(reg_se, seed_se), seeds=len(gaps),
                    window=(window[0], window[-1]))


def effective_parameter_multiplier(baseline: list[tuple[float, float]], params: float,
                                   loss: float) -> float:
    """How many times ``params`` a baseline model would need to reach ``loss``.

    The paper's v1 reading ("LEV behaves as a dense model with 1.47-2.11x more
    parameters"): fit ``loss = a * N ** -b`` through the baseline's (N, loss) points of one
    token budget (least squares in log-log), solve it for the model's loss, divide by its
    own parameter count. > 1: the model is worth more than its parameters; < 1: less.

    Raises:
        ValueError: fewer than two baseline sizes, or a fit in which loss does not fall
            with size (nothing to extrapolate along).
    """
    if len({n for n, _ in baseline}) < 2:
        raise ValueError("the baseline needs at least two model sizes")
    slope, _ = least_squares([math.log(n) for n, _ in baseline], [math.log(v) for _, v in baseline])
    if slope >= 0:
        raise ValueError(f"baseline loss does not fall with size (log-log slope {slope:+.3f})")
    log_n = statistics.fmean(math.log(n) for n, _ in baseline)
    log_l = statistics.fmean(math.log(v) for _, v in baseline)
    n_eff = math.exp(log_n + (math.log(loss) - log_l) / slope)
    return n_eff / params


def arm_curves(results: Path) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """``results.jsonl`` of a study plan -> {(corpus, arm): {seed: results line}} for the
    runs that finished (a run retrained after an error appears once, with its last line)."""
    found: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for line in results.read_text().splitlines():
        row = json.loads(line)
        if "error" in row or not row.get("val_curve"):
            continue
        found.setdefault((row["corpus"], row.get("arm", row["variant"])), {})[row["seed"]] = row
    return found


def _curve(row: dict[str, Any]) -> Curve:
    return {int(s): float(v) for s, v in row["val_curve"]}


def best_lr_arms(arms: dict[tuple[str, str], dict[int, dict[str, Any]]], corpus: str
                 ) -> dict[str, str]:
    """variant -> its arm with the lowest mean final subset loss over seeds on ``corpus``
    (equal tuning: each variant is compared at its own best grid lr)."""
    best: dict[str, tuple[float, str]] = {}
    for (c, arm), seeds in arms.items():
        if c != corpus:
            continue
        variant = next(iter(seeds.values()))["variant"]
        final = statistics.fmean(_curve(r)[max(_curve(r))] for r in seeds.values())
        if variant not in best or final < best[variant][0]:
            best[variant] = (final, arm)
    return {v: arm for v, (_, arm) in best.items()}


def run_meta(row: dict[str, Any]) -> dict[str, Any]:
    """meta.json of a results line's newest checkpoint (its resolved config included), or,
    once the checkpoints are gone, ``{"config": ...}`` from the line itself (the runner
    records the resolved config, so published results stay readable without the runs).

    Raises:
        FileNotFoundError: neither the checkpoint nor a recorded config exists.
    """
    save = Path(row["save_dir"])
    latest = save / "latest"
    if latest.is_file():
        return json.loads((save / latest.read_text().strip() / "meta.json").read_text())
    if "config" in row:
        return {"config": row["config"]}
    raise FileNotFoundError(f"{save}: no checkpoint and no recorded config for "
                            f"{row['corpus']}/{row.get('arm', row['variant'])}/seed{row['seed']}; "
                            f"rerun it, or point --out at the runs")


def _tokens_per_step(row: dict[str, Any]) -> int:
    """Global batch x sequence length of a run, from its checkpoint's own config."""
    cfg = run_meta(row)["config"]
    return cfg["train"]["global_batch_size"] * cfg["model"]["seq_length"]


def write_trend_report(results: Path, out: Path, baselines: tuple[str, ...] = (
        "tied-iso", "tied", "untied")) -> Path:
    """``out/trend.md`` (+ one gap-vs-tokens plot per corpus): every LEV variant at its
    best lr against every baseline at its best lr, the fitted trend and its verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = arm_curves(results)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# LEV's gap to its baselines over training", "",
             f"From `{results}`. Gap = val loss (fixed subset) of LEV - baseline, in nats; "
             "each variant at its best grid lr (lowest mean final subset loss); trend = slope "
             "of LEV's advantage over the second half of training (pretrain/study/trend.py).",
             ""]
    for corpus in sorted({c for c, _ in arms}):
        best = best_lr_arms(arms, corpus)
        levs = sorted(v for v in best if v.startswith("lev"))
        lines += [f"## {corpus}", "", "| LEV arm | baseline arm | seeds | final gap (nats) | "
                  "LEV's advantage, slope per 1k steps | verdict (second half) |", "|---|---|---:|---:|---:|---|"]
        fig, ax = plt.subplots(figsize=(7, 4))
        for lev in levs:
            for base in baselines:
                if base not in best:
                    continue
                a, b = arms[(corpus, best[lev])], arms[(corpus, best[base])]
                seeds = sorted(set(a) & set(b))
                if not seeds:
                    continue
                pairs = [(_curve(a[s]), _curve(b[s])) for s in seeds]
                try:
                    trend = fit_gap_trend(pairs)
                except ValueError as exc:
                    lines.append(f"| {best[lev]} | {best[base]} | {len(seeds)} | - | - | {exc} |")
                    continue
                lines.append(f"| {best[lev]} | {best[base]} | {len(seeds)} | "
                             f"{trend.final_gap:+.3f} | {trend.slope_per_1k:+.3f} ± "
                             f"{trend.stderr_per_1k:.3f} | {trend.verdict}: {_MEANING[trend.verdict]} |")
                tps = _tokens_per_step(a[seeds[0]])
                gaps = [gap_curve(*p) for p in pairs]
                steps = sorted(set.intersection(*(set(g) for g in gaps)))
                ax.plot([s * tps / 1e6 for s in steps],
                        [statistics.fmean(g[s] for g in gaps) for s in steps],
                        label=f"{best[lev]} - {best[base]}")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel("training tokens (M)")
        ax.set_ylabel("val loss gap, nats (< 0: LEV better)")
        ax.set_title(f"{corpus}: LEV minus baseline")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"gap_{corpus}.png", dpi=110)
        plt.close(fig)
        lines += ["", f"![gap over training]({f'gap_{corpus}.png'})", ""]
    (out / "trend.md").write_text("\n".join(lines) + "\n")
    return out / "trend.md"
