"""Evaluation results -> ``eval.json``, ``report.md`` and PNG plots (rank 0 only).

The first run is the reference (the LEV run); every other run is a baseline. Relative
perplexity change is reported as ``ppl(reference) / ppl(baseline) - 1``: negative means
the reference is better, as the paper states "-9 % validation perplexity".

Tokens-to-target reads the runs' ``metrics.jsonl`` (validation records written during
training, ``train.eval_interval``): the first step at which the reference's val loss was
<= the baseline's final val loss, as a fraction of the baseline's final step. Every step
is converted to tokens (global batch x sequence length, from each checkpoint), so runs
with other batch sizes compare in tokens.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pretrain.buckets import BucketSpec
from pretrain.metrics import perplexity

__all__ = ["bucket_rows", "read_metrics", "tokens_to_target", "write_report"]


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


def tokens_to_target(reference_val: dict[int, float], baseline_val: dict[int, float],
                     token_ratio: float = 1.0) -> dict[str, Any]:
    """When the reference first reached the baseline's final val loss.

    Returns ``{"reached": bool, "target_loss", "baseline_step", "reference_step",
    "speedup"}`` (``speedup`` = baseline tokens / reference tokens at those steps, i.e.
    ``baseline_step / reference_step / token_ratio`` where ``token_ratio`` = reference
    tokens per step / baseline tokens per step), or
    ``{"reached": False, "reason": ...}`` when either run has no val records.
    """
    if not reference_val or not baseline_val:
        return {"reached": False, "reason": "no val_loss records in metrics.jsonl "
                                            "(train with train.eval_interval > 0)"}
    final_step = max(baseline_val)
    target = baseline_val[final_step]
    result = {"reached": False, "target_loss": target, "baseline_step": final_step,
              "reference_step": None, "speedup": None}
    for step, loss in sorted(reference_val.items()):
        if loss <= target:
            result.update(reached=True, reference_step=step, speedup=final_step / step / token_ratio)
            break
    return result


def _labels(runs: list[dict[str, Any]]) -> list[str]:
    """The embedding name; ``name:save_dir`` if repeated; ``#i`` if still ambiguous."""
    names = [r["embedding"] for r in runs]
    labels = [n if names.count(n) == 1 else f"{n}:{Path(r['save_dir']).name}"
              for n, r in zip(names, runs, strict=True)]
    return [label if labels.count(label) == 1 else f"{label}#{i}"
            for i, label in enumerate(labels)]


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:+.1f} %"


def _range(row: dict[str, Any]) -> str:
    if row["num_ids"] == 0:
        return "(empty)"
    if row["bucket"] == "unseen":
        return "0"
    return f"{row['min_train_count']}-{row['max_train_count']}"


def _markdown(result: dict[str, Any]) -> str:
    runs, labels = result["runs"], result["labels"]
    ref = labels[0]
    lines = ["# Evaluation report", "",
             f"Validation split of `{result['data']}`; buckets by the label token's train count "
             f"(`token_counts.npy`): `unseen` plus {result['num_buckets']} equal-train-mass "
             "buckets, b1 rarest (edges: `pretrain/buckets.py`).", "",
             "| run | embedding | step | checkpoint | eval ranks | tokens | loss | ppl |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for label, r in zip(labels, runs, strict=True):
        lines.append(f"| {label} | {r['embedding']} | {r['step']} | `{r['checkpoint']}` | "
                     f"{r['eval_world_size']} | {r['tokens']} | {_fmt(r['loss'], 4)} | "
                     f"{_fmt(r['ppl'], 2)} |")
    lines += ["", "## Perplexity per frequency bucket", ""]
    header = "| bucket | train count range | ids | val tokens |" + "".join(
        f" ppl {label} |" for label in labels) + "".join(
        f" {ref} vs {label} |" for label in labels[1:])
    lines += [header, "|" + "---|" * (4 + len(labels) + len(labels) - 1)]
    rows0 = runs[0]["buckets"]
    for k, row in enumerate(rows0):
        cells = [row["bucket"], _range(row), str(row["num_ids"]), str(row["tokens"])]
        cells += [_fmt(r["buckets"][k]["ppl"], 2) for r in runs]
        cells += [_pct(result["ppl_change"][label]["buckets"][row["bucket"]])
                  for label in labels[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**all**", "", "", str(runs[0]["tokens"])]
    cells += [f"**{_fmt(r['ppl'], 2)}**" for r in runs]
    cells += [f"**{_pct(result['ppl_change'][label]['overall'])}**" for label in labels[1:]]
    lines.append("| " + " | ".join(cells) + " |")
    if len(runs) > 1:
        lines += ["", f"Relative change: ppl({ref}) / ppl(baseline) - 1 (negative: {ref} "
                  "is better).", "", "## Tokens to target", ""]
        for label in labels[1:]:
            t = result["tokens_to_target"][label]
            if t.get("reason"):
                lines.append(f"- {ref} vs {label}: {t['reason']}")
            elif t["reached"]:
                lines.append(f"- {ref} reached {label}'s final val loss ({t['target_loss']:.4f}) "
                             f"at step {t['reference_step']} of {t['baseline_step']}: "
                             f"{t['baseline_step']}/{t['reference_step']} = "
                             f"{t['speedup']:.2f}x fewer tokens")
            else:
                lines.append(f"- {ref} vs {label}: not reached ({label}'s final val loss "
                             f"{t['target_loss']:.4f} at step {t['baseline_step']}; {ref}'s "
                             "val loss never went that low)")
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in result["plots"]]
    return "\n".join(lines) + "\n"


def _plots(out: Path, result: dict[str, Any], curves: list[tuple]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, runs = result["labels"], result["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, (train, val) in zip(labels, curves, strict=True):
        if train:
            axes[0].plot(list(train), list(train.values()), label=label, linewidth=1)
        if val:
            axes[1].plot(list(val), list(val.values()), marker="o", markersize=3, label=label)
    for ax, title in zip(axes, ("train loss", "val loss (metrics.jsonl)"), strict=True):
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=90)
    plt.close(fig)

    names = [row["bucket"] for row in runs[0]["buckets"]]
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(9, 4))
    for j, (label, r) in enumerate(zip(labels, runs, strict=True)):
        ppl = [row["ppl"] if row["tokens"] else 0.0 for row in r["buckets"]]
        ax.bar([i + (j - (len(runs) - 1) / 2) * width for i in range(len(names))], ppl, width,
               label=label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n{_range(row)}" for n, row in zip(names, runs[0]["buckets"],
                                                                strict=True)], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("val perplexity (log)")
    ax.set_title("perplexity per train-frequency bucket (b1 rarest)")
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
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_report(out: Path, runs: list[dict[str, Any]], spec: BucketSpec,
                 data_dir: str | Path) -> list[Path]:
    """Write ``eval.json``, ``report.md`` and the PNGs into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    labels = _labels(runs)
    for r in runs:
        r["buckets"] = bucket_rows(r, spec)
    curves = [read_metrics(r["save_dir"]) for r in runs]
    ref = runs[0]
    change, ttt = {}, {}
    for label, r, (_, val) in zip(labels[1:], runs[1:], curves[1:], strict=True):
        change[label] = {
            "overall": ref["ppl"] / r["ppl"] - 1,
            "buckets": {a["bucket"]: (a["ppl"] / b["ppl"] - 1 if a["tokens"] else float("nan"))
                        for a, b in zip(ref["buckets"], r["buckets"], strict=True)}}
        ttt[label] = tokens_to_target(curves[0][1], val,
                                      ref["tokens_per_step"] / r["tokens_per_step"])
    result = {"data": str(data_dir), "num_buckets": spec.num_buckets - 1,
              "labels": labels, "reference": labels[0], "runs": runs,
              "ppl_change": change, "tokens_to_target": ttt}
    result["plots"] = _plots(out, result, curves)
    (out / "eval.json").write_text(json.dumps(_json_safe(result), indent=1) + "\n")
    (out / "report.md").write_text(_markdown(result))
    return [out / "eval.json", out / "report.md", *(out / p for p in result["plots"])]
