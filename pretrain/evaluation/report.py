"""Evaluation results -> ``eval.json``, ``report.md`` and PNG plots (rank 0 only).

Runs come in *groups*: one variant (``lev``, ``tied``, ``tied-iso``, ...) trained with
one or more seeds. The first group is the reference (the LEV variant); every other group
is a baseline. Per group the report gives perplexity per seed and its mean +- sample
std; against each baseline the relative change of the mean perplexity
``mean_ppl(reference) / mean_ppl(baseline) - 1`` (negative: the reference is better, as
the paper states "-9 % validation perplexity"), the paired per-seed changes (seed k of
both groups shares init seed and data order), and whether the difference of the means
exceeds the seed spread (the larger of the two groups' stds).

Buckets with fewer than ``min_bucket_tokens`` validation tokens are reported as "few
tokens" without a perplexity change: a handful of tokens is not a measurement.

Tokens-to-target reads the runs' ``metrics.jsonl`` validation records (written every
``train.eval_interval`` steps on the ``train.eval_samples`` subset, the same fixed subset
for every run; ``pretrain.data.sampler.val_subset_ids``), averages the curves of a group's
seeds step by step, and asks in both directions when one curve first reaches the other's
final loss, interpolating linearly between evaluations. Steps are converted to tokens
(global batch x sequence length of each run), so runs with other batch sizes compare.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from pretrain.evaluation.buckets import BucketSpec
from pretrain.runtime.metrics import perplexity

__all__ = ["bucket_rows", "mean_curve", "read_metrics", "summarize", "tokens_to_target",
           "write_report"]

#: Buckets with fewer validation tokens than this get no perplexity change.
MIN_BUCKET_TOKENS = 1000


def bucket_rows(run: dict[str, Any], spec: BucketSpec) -> list[dict[str, Any]]:
    """Per-bucket tokens, loss and perplexity of one evaluated run."""
    rows = []
    for desc, tokens, loss_sum in zip(spec.describe(), run["bucket_tokens"],
                                      run["bucket_loss_sum"], strict=True):
        loss = loss_sum / tokens if tokens else float("nan")
        rows.append({**desc, "tokens": tokens, "loss": loss, "ppl": perplexity(loss)})
    return rows


def read_metrics(save_dir: str | Path) -> tuple[dict[int, float], dict[int, float]]:
    """(train loss by step, val loss by step) from ``metrics.jsonl`` (last record wins)."""
    path = Path(save_dir) / "metrics.jsonl"
    train, val = {}, {}
    if not path.is_file():
        return train, val
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if "loss" in rec:
            train[int(rec["step"])] = float(rec["loss"])
        if "val_loss" in rec:
            val[int(rec["step"])] = float(rec["val_loss"])
    return dict(sorted(train.items())), dict(sorted(val.items()))


def mean_curve(curves: list[dict[int, float]]) -> dict[int, float]:
    """Step-wise mean of several curves over the steps every one of them has."""
    if not curves:
        return {}
    steps = set(curves[0]).intersection(*curves[1:])
    return {s: sum(c[s] for c in curves) / len(curves) for s in sorted(steps)}


def _first_crossing(curve: dict[int, float], target: float) -> float | None:
    """Interpolated step at which ``curve`` first reaches ``<= target`` (None: never)."""
    prev = None
    for step, loss in sorted(curve.items()):
        if loss <= target:
            if prev is None or prev[1] == loss:
                return float(step)  # at or before the first evaluation: no earlier point
            s0, l0 = prev
            return s0 + (l0 - target) / (l0 - loss) * (step - s0)
        prev = (step, loss)
    return None


def tokens_to_target(reference_val: dict[int, float], baseline_val: dict[int, float],
                     reference_tokens_per_step: float = 1.0,
                     baseline_tokens_per_step: float = 1.0) -> dict[str, Any]:
    """How many tokens the reference needs to reach the baseline's final val loss.

    Returns ``{"reached", "target_loss", "baseline_step", "baseline_tokens",
    "reference_step" (interpolated, may be fractional), "reference_tokens", "ratio"}``:
    ``ratio`` = reference tokens / baseline tokens (< 1: the reference is faster), or
    ``{"reached": False, "reason": ...}`` when either curve is empty.
    """
    if not reference_val or not baseline_val:
        return {"reached": False, "reason": "no val_loss records in metrics.jsonl "
                                            "(train with train.eval_interval > 0)"}
    final_step = max(baseline_val)
    target = baseline_val[final_step]
    base_tokens = final_step * baseline_tokens_per_step
    result = {"reached": False, "target_loss": target, "baseline_step": final_step,
              "baseline_tokens": base_tokens, "reference_step": None,
              "reference_tokens": None, "ratio": None}
    step = _first_crossing(reference_val, target)
    if step is not None:
        tokens = step * reference_tokens_per_step
        result.update(reached=True, reference_step=step, reference_tokens=tokens,
                      ratio=tokens / base_tokens)
    return result


def _stats(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(groups: dict[str, list[dict[str, Any]]], spec: BucketSpec,
              min_bucket_tokens: int = MIN_BUCKET_TOKENS) -> dict[str, Any]:
    """Group statistics, reference-vs-baseline changes and tokens-to-target (pure)."""
    labels = list(groups)
    ref = labels[0]
    out: dict[str, Any] = {"labels": labels, "reference": ref, "groups": {},
                           "min_bucket_tokens": min_bucket_tokens}
    for label, runs in groups.items():
        for r in runs:
            r["buckets"] = bucket_rows(r, spec)
        ppl_mean, ppl_std = _stats([r["ppl"] for r in runs])
        buckets = []
        for k, row in enumerate(runs[0]["buckets"]):
            values = [r["buckets"][k]["ppl"] for r in runs]
            finite = all(math.isfinite(v) for v in values)
            mean, std = _stats(values) if finite else (float("nan"), float("nan"))
            buckets.append({"bucket": row["bucket"], "tokens": row["tokens"],
                            "ppl_mean": mean, "ppl_std": std})
        tps = runs[0]["tokens_per_step"]
        curves = [read_metrics(r["save_dir"])[1] for r in runs]
        out["groups"][label] = {
            "embedding": runs[0]["embedding"], "params": runs[0].get("params"),
            "seeds": [r["seed"] for r in runs], "ppl": [r["ppl"] for r in runs],
            "loss": [r["loss"] for r in runs], "ppl_mean": ppl_mean, "ppl_std": ppl_std,
            "steps": runs[0]["step"], "tokens_per_step": tps, "buckets": buckets,
            "val_curve": mean_curve(curves),
        }
    g_ref = out["groups"][ref]
    out["vs"] = {}
    for label in labels[1:]:
        g = out["groups"][label]
        diff = g_ref["ppl_mean"] - g["ppl_mean"]
        spread = max(g_ref["ppl_std"], g["ppl_std"])
        by_seed = dict(zip(g["seeds"], g["ppl"], strict=True))
        paired = [p / by_seed[s] - 1 for s, p in zip(g_ref["seeds"], g_ref["ppl"], strict=True)
                  if s in by_seed]
        buckets = {}
        for a, b in zip(g_ref["buckets"], g["buckets"], strict=True):
            few = a["tokens"] < min_bucket_tokens
            buckets[a["bucket"]] = None if few or not math.isfinite(a["ppl_mean"]) else (
                a["ppl_mean"] / b["ppl_mean"] - 1)
        ref_curve, base_curve = g_ref["val_curve"], g["val_curve"]
        out["vs"][label] = {
            "overall": g_ref["ppl_mean"] / g["ppl_mean"] - 1,
            "ppl_difference": diff, "seed_spread": spread,
            "exceeds_seed_spread": len(g_ref["ppl"]) > 1 and len(g["ppl"]) > 1
            and abs(diff) > spread,
            "paired": paired, "buckets": buckets,
            "reference_reaches_baseline": tokens_to_target(
                ref_curve, base_curve, g_ref["tokens_per_step"], g["tokens_per_step"]),
            "baseline_reaches_reference": tokens_to_target(
                base_curve, ref_curve, g["tokens_per_step"], g_ref["tokens_per_step"]),
        }
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:+.1f} %"


def _range(row: dict[str, Any]) -> str:
    if row["num_ids"] == 0:
        return "(empty)"
    if row["bucket"] == "unseen":
        return "0"
    return f"{row['min_train_count']}-{row['max_train_count']}"


def _pm(mean: float, std: float, n: int, digits: int = 2) -> str:
    return _fmt(mean, digits) if n < 2 else f"{_fmt(mean, digits)} ± {_fmt(std, digits)}"


def ttt_sentences(ref: str, label: str, vs: dict[str, Any]) -> list[str]:
    """Tokens-to-target in words, both directions."""
    fwd, back = vs["reference_reaches_baseline"], vs["baseline_reaches_reference"]
    if fwd.get("reason"):
        return [f"{ref} vs {label}: {fwd['reason']}"]
    lines = []
    if fwd["reached"]:
        lines.append(f"{ref} reaches {label}'s final val loss ({fwd['target_loss']:.4f}) at "
                     f"{fwd['ratio']:.2f}x {label}'s tokens (step {fwd['reference_step']:.0f} "
                     f"of {fwd['baseline_step']})")
    else:
        lines.append(f"{ref} does not reach {label}'s final val loss ({fwd['target_loss']:.4f})")
    if back["reached"]:
        lines.append(f"{label} reaches {ref}'s final val loss ({back['target_loss']:.4f}) at "
                     f"{back['ratio']:.2f}x {ref}'s tokens (step {back['reference_step']:.0f} "
                     f"of {back['baseline_step']})")
    else:
        lines.append(f"{label} does not reach {ref}'s final val loss "
                     f"({back['target_loss']:.4f})")
    return lines


def _markdown(result: dict[str, Any], spec_rows: list[dict[str, Any]]) -> str:
    s = result["summary"]
    labels, ref, groups = s["labels"], s["reference"], s["groups"]
    lines = ["# Evaluation report", "",
             f"Validation split of `{result['data']}` ({result['val_tokens']} tokens, every one "
             f"once); buckets by the label token's train count (`token_counts.npy`): `unseen` "
             f"plus {result['num_buckets']} equal-train-mass buckets, b1 rarest "
             "(`pretrain/evaluation/buckets.py`). A seed sets the init and the data order.", "",
             "| run | embedding | parameters | seeds | step | ppl per seed | ppl mean ± std |",
             "|---|---|---:|---|---:|---|---:|"]
    for label in labels:
        g = groups[label]
        per_seed = ", ".join(f"{_fmt(p, 2)}" for p in g["ppl"])
        params = f"{g['params']:,}" if g["params"] else "n/a"
        lines.append(f"| {label} | {g['embedding']} | {params} | "
                     f"{', '.join(map(str, g['seeds']))} | {g['steps']} | {per_seed} | "
                     f"**{_pm(g['ppl_mean'], g['ppl_std'], len(g['ppl']))}** |")
    if len(labels) > 1:
        lines += ["", f"## {ref} versus each baseline", "",
                  f"Change of the mean ppl: mean({ref}) / mean(baseline) - 1 (negative: {ref} "
                  "is better). Paired: the same change seed by seed. Exceeds the seed spread: "
                  "|difference of the means| > the larger of the two stds.", "",
                  "| baseline | ppl change | paired per seed | difference | seed spread | "
                  "exceeds spread |", "|---|---:|---|---:|---:|---|"]
        for label in labels[1:]:
            v = s["vs"][label]
            n = min(len(groups[ref]["ppl"]), len(groups[label]["ppl"]))
            exceeds = "n/a (one seed)" if n < 2 else ("**yes**" if v["exceeds_seed_spread"]
                                                       else "no")
            lines.append(f"| {label} | **{_pct(v['overall'])}** | "
                         f"{', '.join(_pct(p) for p in v['paired'])} | "
                         f"{_fmt(v['ppl_difference'], 2)} | {_fmt(v['seed_spread'], 2)} | "
                         f"{exceeds} |")
    lines += ["", "## Perplexity per frequency bucket (mean over seeds)", ""]
    header = "| bucket | train count range | ids | val tokens |" + "".join(
        f" ppl {label} |" for label in labels) + "".join(
        f" {ref} vs {label} |" for label in labels[1:])
    lines += [header, "|" + "---|" * (4 + 2 * len(labels) - 1)]
    for k, row in enumerate(spec_rows):
        cells = [row["bucket"], _range(row), str(row["num_ids"]), str(row["tokens"])]
        cells += [_fmt(groups[label]["buckets"][k]["ppl_mean"], 2) for label in labels]
        few = row["tokens"] < s["min_bucket_tokens"]
        cells += ["few tokens" if few else _pct(s["vs"][label]["buckets"][row["bucket"]])
                  for label in labels[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**all**", "", "", str(result["val_tokens"])]
    cells += [f"**{_fmt(groups[label]['ppl_mean'], 2)}**" for label in labels]
    cells += [f"**{_pct(s['vs'][label]['overall'])}**" for label in labels[1:]]
    lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Buckets with fewer than {s['min_bucket_tokens']} validation tokens are "
              "marked \"few tokens\" and get no change."]
    if len(labels) > 1:
        lines += ["", "## Tokens to target", "",
                  f"Val curves: {result['curve_description']}; mean over each group's seeds; "
                  "linear interpolation between evaluations.", ""]
        for label in labels[1:]:
            lines += [f"- {line}" for line in ttt_sentences(ref, label, s["vs"][label])]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in result["plots"]]
    return "\n".join(lines) + "\n"


def _plots(out: Path, summary: dict[str, Any], groups: dict[str, list[dict[str, Any]]],
           spec_rows: list[dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = summary["labels"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, label in enumerate(labels):
        color = f"C{i}"
        curves = [read_metrics(r["save_dir"]) for r in groups[label]]
        train = mean_curve([c[0] for c in curves])
        if train:
            axes[0].plot(list(train), list(train.values()), label=label, linewidth=1, color=color)
        for _, val in curves:  # each seed thin, the mean bold
            if val and len(curves) > 1:
                axes[1].plot(list(val), list(val.values()), color=color, alpha=0.3, linewidth=0.8)
        mean = summary["groups"][label]["val_curve"]
        if mean:
            axes[1].plot(list(mean), list(mean.values()), marker="o", markersize=3,
                         label=label, color=color)
    for ax, title in zip(axes, ("train loss (mean over seeds)", "val loss (each seed, mean)"),
                         strict=True):
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no curves without metrics.jsonl
            ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=90)
    plt.close(fig)

    names = [row["bucket"] for row in spec_rows]
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(9, 4))
    for j, label in enumerate(labels):
        rows = summary["groups"][label]["buckets"]
        ppl = [r["ppl_mean"] if r["tokens"] and math.isfinite(r["ppl_mean"]) else 0.0
               for r in rows]
        err = [r["ppl_std"] if r["tokens"] and math.isfinite(r["ppl_std"]) else 0.0
               for r in rows]
        ax.bar([i + (j - (len(labels) - 1) / 2) * width for i in range(len(names))], ppl, width,
               yerr=err, label=label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n{_range(row)}" for n, row in zip(names, spec_rows, strict=True)],
                       fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("val perplexity (log)")
    ax.set_title("perplexity per train-frequency bucket (b1 rarest; mean ± std over seeds)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "bucket_ppl.png", dpi=90)
    plt.close(fig)
    return ["loss_curves.png", "bucket_ppl.png"]


def _json_safe(value: Any) -> Any:
    """NaN/inf (empty buckets, unreached targets) -> null: eval.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_report(out: Path, groups: dict[str, list[dict[str, Any]]], spec: BucketSpec,
                 data_dir: str | Path, *, curve_description: str = "metrics.jsonl val records",
                 min_bucket_tokens: int = MIN_BUCKET_TOKENS) -> list[Path]:
    """Write ``eval.json``, ``report.md`` and the PNGs into ``out``; returns their paths.

    Args:
        groups: label -> evaluated runs (one per seed); the first label is the reference.
    """
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(groups, spec, min_bucket_tokens)
    first = next(iter(groups.values()))[0]
    spec_rows = first["buckets"]
    result = {"data": str(data_dir), "num_buckets": spec.num_buckets - 1,
              "val_tokens": first["tokens"], "curve_description": curve_description,
              "labels": summary["labels"], "reference": summary["reference"],
              "runs": [{**r, "group": label} for label, runs in groups.items() for r in runs],
              "summary": summary}
    result["plots"] = _plots(out, summary, groups, spec_rows)
    (out / "eval.json").write_text(json.dumps(_json_safe(result), indent=1) + "\n")
    (out / "report.md").write_text(_markdown(result, spec_rows))
    return [out / "eval.json", out / "report.md", *(out / p for p in result["plots"])]
