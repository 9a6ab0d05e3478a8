"""The size ladder: lev / tied / untied at ~200M, ~400M and 1.2B (docs/ladder.md).

    python -m pretrain.study.ladder table [--mfu 0.4] [--peak-tflops 989]   # counts, cost
    python -m pretrain.study.ladder report RUNS_DIR [--out RUNS_DIR/ladder.md]
                                          [--target-config pretrain/configs/lev_1b2.yaml]

``table`` builds every rung's models on the meta device (:func:`pretrain.training.params.count_all`)
and prints their parameter counts, LEV's overhead, the token budget, the training FLOPs per
token and the GPU-hours those *compute* to at an assumed MFU. Nothing in it is measured.

``report`` reads the runs ``slurm/submit_ladder.sh`` wrote under RUNS_DIR (``ARM_RUNG``:
``metrics.jsonl`` and the newest checkpoint's ``meta.json``), takes each finished run's
validation loss at its last step, and fits LEV's gap to tied (and to untied) against the
body size with the study's size fit (:func:`pretrain.study.size.fit_size_trend`): the gap
as a line in ln(body), as a power law, and LEV's effective-parameter multiplier.

Exit codes: 0 done; 2 bad input (a missing RUNS_DIR or config, no finished run), with a
one-line error naming what to fix.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pretrain.config import Config, ConfigError, load_config
from pretrain.study.size import SizePoint, fit_size_trend

if TYPE_CHECKING:
    from pretrain.training.model import ParamCounts

__all__ = ["ARMS", "DEFAULT_MFU", "DEFAULT_PEAK_TFLOPS", "RUNGS", "FinishedRun", "LadderError",
           "RungCost", "config_path", "format_cost_table", "gpu_hours", "ladder_points", "main",
           "read_run", "rung_cost", "write_ladder_report"]

REPO = Path(__file__).resolve().parents[2]
#: Rungs, smallest first (slurm/submit_ladder.sh's order), and the arms of each.
RUNGS = ("200m", "400m", "1b2")
ARMS = ("lev", "tied", "untied")
#: The assumptions of the computed GPU-hours: H100 SXM dense bf16 peak, 40 % MFU.
DEFAULT_PEAK_TFLOPS = 989.0
DEFAULT_MFU = 0.40


class LadderError(ValueError):
    """Bad input to the ladder tools (a missing directory or config, no finished run)."""


def config_path(arm: str, rung: str) -> Path:
    """``pretrain/configs/ARM_RUNG.yaml``."""
    return REPO / "pretrain" / "configs" / f"{arm}_{rung}.yaml"


def gpu_hours(flops_per_token: float, tokens: int, mfu: float = DEFAULT_MFU,
              peak_tflops: float = DEFAULT_PEAK_TFLOPS) -> float:
    """GPU-hours one run computes to: FLOPs per token x tokens / (MFU x peak), in hours."""
    return flops_per_token * tokens / (mfu * peak_tflops * 1e12) / 3600


@dataclass(frozen=True, slots=True)
class RungCost:
    """One rung's shape, parameter counts and computed (not measured) training cost."""

    rung: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    ffn_hidden_size: int
    num_modes: int
    counts: dict[str, ParamCounts]
    """Per arm, from the model built on the meta device."""
    tokens: int
    """train_steps x global_batch_size x seq_length."""
    flops_per_token: dict[str, float]
    """Per arm: :func:`pretrain.runtime.metrics.model_flops_per_token` (what MFU logs use)."""
    gpu_hours: dict[str, float]
    """Per arm at the assumed MFU and peak."""

    @property
    def lev_overhead(self) -> float:
        """LEV's total parameters over tied's, minus 1."""
        return self.counts["lev"].total / self.counts["tied"].total - 1

    @property
    def tokens_per_param(self) -> float:
        """Tokens per LEV parameter (the study's size report's reading)."""
        return self.tokens / self.counts["lev"].total


def rung_cost(rung: str, mfu: float = DEFAULT_MFU,
              peak_tflops: float = DEFAULT_PEAK_TFLOPS) -> RungCost:
    """Build the rung's three configs on the meta device and compute their cost.

    Raises:
        LadderError: a config of the rung is missing, or the arms' backbones differ.
        ConfigError: a config does not load.
    """
    from pretrain.runtime.metrics import model_flops_per_token
    from pretrain.training.params import count_all

    configs = {}
    for arm in ARMS:
        path = config_path(arm, rung)
        if not path.is_file():
            raise LadderError(f"{path} not found (rungs: {', '.join(RUNGS)})")
        configs[arm] = load_config(path)
        if configs[arm].model.embedding != arm:
            raise LadderError(f"{path}: model.embedding={configs[arm].model.embedding}, "
                              f"expected {arm}")
    lev = configs["lev"]
    for arm in ("tied", "untied"):
        _check_same_backbone(lev, configs[arm], str(config_path(arm, rung)))
    counts = count_all(lev)
    m, t = lev.model, lev.train
    tokens = t.train_steps * t.global_batch_size * m.seq_length
    flops = {arm: model_flops_per_token(configs[arm]) for arm in ARMS}
    return RungCost(rung, m.num_layers, m.hidden_size, m.num_attention_heads,
                    m.ffn_hidden_size, lev.lev.num_modes, counts, tokens, flops,
                    {arm: gpu_hours(flops[arm], tokens, mfu, peak_tflops) for arm in ARMS})


def _check_same_backbone(lev: Config, other: Config, where: str) -> None:
    """The arms of a rung differ in ``model.embedding`` only (else the gap is not LEV's)."""
    if replace(other.model, embedding="lev") != lev.model:
        raise LadderError(f"{where}: its model section differs from the lev arm's in more "
                          f"than model.embedding; give the rung's arms one backbone")
    if other.train.train_steps != lev.train.train_steps or other.optimizer != lev.optimizer:
        raise LadderError(f"{where}: its optimizer or train.train_steps differ from the lev "
                          f"arm's; give the rung's arms one recipe")


def format_cost_table(costs: list[RungCost], mfu: float = DEFAULT_MFU,
                      peak_tflops: float = DEFAULT_PEAK_TFLOPS) -> str:
    """Markdown: shapes, counts per arm, LEV overhead, tokens, FLOPs/token, GPU-hours."""
    rows = ["| rung | layers x width, heads, SwiGLU | LEV modes | lev total | tied total | "
            "untied total | LEV params | LEV over tied | tokens | tokens / LEV param | "
            "FLOPs / token (lev, computed) | GPU-hours per arm (lev, computed) | "
            "GPU-hours per rung (3 arms, computed) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in costs:
        n = c.counts
        rows.append(
            f"| {c.rung} | {c.num_layers} x {c.hidden_size}, {c.num_attention_heads}, "
            f"{c.ffn_hidden_size} | {c.num_modes} | {n['lev'].total:,} | {n['tied'].total:,} | "
            f"{n['untied'].total:,} | {n['lev'].lev:,} | {100 * c.lev_overhead:+.3f} % | "
            f"{c.tokens / 1e9:.2f}B | {c.tokens_per_param:.1f} | "
            f"{c.flops_per_token['lev'] / 1e9:.3f} G | {c.gpu_hours['lev']:,.1f} | "
            f"{sum(c.gpu_hours.values()):,.1f} |")
    rows += ["", f"Computed, not measured: FLOPs/token = 3 x forward matmul FLOPs "
                 f"(pretrain.runtime.metrics.model_flops_per_token, the count the training's "
                 f"MFU uses: 6 x matmul parameters + 12 x layers x seq x width for attention, "
                 f"+ LEV's projection); GPU-hours = FLOPs/token x tokens / "
                 f"({100 * mfu:.0f} % MFU x {peak_tflops:g} TFLOP/s peak) / 3600."]
    return "\n".join(rows)


# ---------------------------------------------------------------------------- runs


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """One arm's finished run: its config (from the checkpoint) and final validation loss."""

    save_dir: Path
    config: Config
    step: int
    val_loss: float


def read_run(save_dir: Path) -> FinishedRun | str:
    """The run in ``save_dir`` if it finished (its newest checkpoint is at
    ``train.train_steps`` and a validation record exists at that step), else why not."""
    from pretrain.config import config_from_dict

    latest = save_dir / "latest"
    if not latest.is_file():
        return "no checkpoint yet"
    meta_path = save_dir / latest.read_text().strip() / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        config = config_from_dict(meta["config"])
    except (OSError, ValueError, KeyError) as exc:  # JSONDecodeError and ConfigError too
        return f"unreadable {meta_path} ({exc})"
    steps = config.train.train_steps
    if meta["step"] != steps:
        return f"not finished (step {meta['step']} of {steps})"
    val = None
    metrics = save_dir / "metrics.jsonl"
    for line in metrics.read_text().splitlines() if metrics.is_file() else []:
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a kill mid-write; the rest still counts
            continue
        # The last record of the last step wins: a requeued run may log a step twice.
        if record.get("step") == steps and record.get("val_loss") is not None:
            val = float(record["val_loss"])
    if val is None:
        return (f"finished, but {metrics} has no val_loss at step {steps} "
                f"(train.eval_interval must divide train.train_steps)")
    return FinishedRun(save_dir, config, steps, val)


def _run_dir(runs_dir: Path, arm: str, rung: str, tag: str) -> Path:
    return runs_dir / (f"{arm}_{rung}" + (f"_{tag}" if tag else ""))


def ladder_points(runs_dir: Path, baseline: str = "tied", tag: str = ""
                  ) -> tuple[list[SizePoint], dict[str, str]]:
    """One :class:`~pretrain.study.size.SizePoint` per rung where LEV and ``baseline``
    both finished (the baseline in the point's ``iso_*`` fields), and why each other
    rung/arm under ``runs_dir`` has none (``{"lev_400m": "not finished (step ...)"}``).

    Parameter counts come from each run's own config, built on the meta device.

    Raises:
        LadderError: the two runs of a rung have different backbones.
    """
    from pretrain.training.params import count_all

    points: list[SizePoint] = []
    missing: dict[str, str] = {}
    for rung in RUNGS:
        runs: dict[str, FinishedRun] = {}
        for arm in ("lev", baseline):
            directory = _run_dir(runs_dir, arm, rung, tag)
            if not directory.is_dir():
                continue
            found = read_run(directory)
            if isinstance(found, str):
                missing[directory.name] = found
            else:
                runs[arm] = found
        if len(runs) < 2:
            continue
        lev, base = runs["lev"], runs[baseline]
        _check_same_backbone(lev.config, base.config, str(base.save_dir))
        counts = count_all(lev.config)
        t, m = lev.config.train, lev.config.model
        points.append(SizePoint(
            plan_dir=rung, body=counts["lev"].backbone, lev_params=counts["lev"].total,
            iso_params=counts[baseline].total, lev_loss=lev.val_loss, iso_loss=base.val_loss,
            seeds=1, tokens=t.train_steps * t.global_batch_size * m.seq_length))
    return points, missing


def write_ladder_report(runs_dir: Path, out: Path,
                        target_config: str | Path = "pretrain/configs/lev_1b2.yaml",
                        tag: str = "") -> Path:
    """Write ``out`` (markdown): per baseline (tied, untied) the rungs' final validation
    losses, LEV's gap, and the gap's fit against the body size at the target's body.

    Raises:
        LadderError: ``runs_dir`` is missing or holds no finished rung pair.
        ConfigError: ``target_config`` does not load.
    """
    from pretrain.training.params import count_all

    if not runs_dir.is_dir():
        raise LadderError(f"runs directory {runs_dir} does not exist (the RUNS_DIR "
                          f"slurm/submit_ladder.sh wrote to)")
    if not Path(target_config).is_file() and (REPO / target_config).is_file():
        target_config = REPO / target_config  # the default, from outside the checkout
    target = count_all(load_config(target_config))["lev"].backbone
    lines = ["# The size ladder: LEV's gap to tied and untied against model size", "",
             f"From the runs under `{runs_dir}` (pretrain/study/ladder.py): each arm's "
             f"validation loss (nats) at its last step, one seed per arm. Gap = LEV minus "
             f"the baseline (> 0: LEV trails). Fit: pretrain/study/size.py's "
             f"`fit_size_trend`, extrapolated to the body of `{target_config}` "
             f"({target:,} parameters).", ""]
    any_point = False
    all_missing: dict[str, str] = {}
    for baseline in ("tied", "untied"):
        points, missing = ladder_points(runs_dir, baseline, tag)
        all_missing.update(missing)
        lines += [f"## LEV vs {baseline}", ""]
        if not points:
            lines += [f"No rung has finished lev and {baseline} runs yet.", ""]
            continue
        any_point = True
        try:
            trend = fit_size_trend(points, target)
            multipliers = [f"{m:.2f}x" for m in trend.multipliers]
        except ValueError as exc:
            trend, multipliers = None, ["-"] * len(points)
            reason = str(exc)
        lines += [f"| rung | body | LEV params | {baseline} params | tokens / LEV param | "
                  f"LEV loss | {baseline} loss | gap (nats) | LEV ppl vs {baseline} | "
                  f"effective multiplier |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p, mult in zip(points, multipliers, strict=True):
            lines.append(f"| {p.plan_dir} | {p.body:,} | {p.lev_params:,} | {p.iso_params:,} | "
                         f"{p.tokens / p.lev_params:.1f} | {p.lev_loss:.4f} | "
                         f"{p.iso_loss:.4f} | {p.gap:+.4f} | "
                         f"{100 * math.expm1(p.gap):+.1f} % | {mult} |")
        lines.append("")
        if trend is None:
            lines += [f"No trend: {reason}.", ""]
            continue
        zero = (f"reaches 0 at a body of {trend.zero_body:,.0f}" if trend.zero_body
                else "never reaches 0")
        lines.append(f"- Line in ln(body): {trend.log_slope:+.4f} nats per e-fold of the "
                     f"body; {zero}; at the target body {trend.line_gap_at_target:+.4f} nats.")
        if trend.power_exponent is not None:
            lines.append(f"- Power law: gap ~ body^{trend.power_exponent:.3f}; at the target "
                         f"body {trend.power_gap_at_target:+.4f} nats (LEV still behind).")
        else:
            lines.append("- Power law: not fitted (LEV leads at some rung).")
        lines += [f"- LEV ppl vs {baseline}: exp(gap) - 1 (the paper: -9 % against tied at 1.2B).",
                  f"- Effective multiplier: how many times its parameters the {baseline} arm "
                  f"would need for LEV's loss ({baseline}'s loss-vs-parameters power law over "
                  f"the rungs); the paper's v1 reports 1.47-2.11x against tied at 200M-1.2B.",
                  ""]
    if not any_point:
        raise LadderError(f"no rung under {runs_dir} has a finished lev run next to a "
                          f"finished tied or untied one"
                          + (f" ({'; '.join(f'{k}: {v}' for k, v in sorted(all_missing.items()))})"
                             if all_missing else " (expected directories such as lev_200m)"))
    if all_missing:
        lines += ["## Runs not in the fits", ""]
        lines += [f"- `{name}`: {why}" for name, why in sorted(all_missing.items())]
        lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


# ---------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``table`` or ``report`` (module docstring); the exit code."""
    parser = argparse.ArgumentParser(prog="python -m pretrain.study.ladder",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="parameter counts, LEV overhead, tokens, FLOPs/token "
                                         "and computed GPU-hours of every rung")
    table.add_argument("--rungs", nargs="+", default=list(RUNGS), choices=RUNGS)
    table.add_argument("--mfu", type=float, default=DEFAULT_MFU,
                       help="assumed model FLOPs utilisation (default %(default)s)")
    table.add_argument("--peak-tflops", type=float, default=DEFAULT_PEAK_TFLOPS,
                       help="per-GPU dense bf16 peak, TFLOP/s (default %(default)s: H100 SXM)")
    report = sub.add_parser("report", help="fit LEV's gap against model size from finished runs")
    report.add_argument("runs_dir", type=Path, help="RUNS_DIR of slurm/submit_ladder.sh")
    report.add_argument("--out", type=Path, help="markdown file (default RUNS_DIR/ladder.md)")
    report.add_argument("--target-config", default="pretrain/configs/lev_1b2.yaml",
                        help="extrapolate the gap to this config's body (default %(default)s)")
    report.add_argument("--tag", default="", help="the --tag the runs were submitted with")
    args = parser.parse_args(argv)
    from megatron_patches.quiet import quiet_megatron_import

    quiet_megatron_import()  # before count_all imports megatron-core
    try:
        if args.command == "table":
            if not 0 < args.mfu <= 1 or args.peak_tflops <= 0:
                raise LadderError(f"--mfu={args.mfu} must be in (0, 1] and --peak-tflops="
                                  f"{args.peak_tflops} > 0")
            costs = [rung_cost(r, args.mfu, args.peak_tflops) for r in args.rungs]
            print(format_cost_table(costs, args.mfu, args.peak_tflops))
        else:
            path = write_ladder_report(args.runs_dir, args.out or args.runs_dir / "ladder.md",
                                       args.target_config, args.tag)
            print(path.read_text(), end="")
            print(f"wrote {path}", file=sys.stderr)
    except (LadderError, ConfigError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
