"""The LEV design study's summary: ``docs/results/lev_study/README.md`` and its plots.

Reads what ``python -m pretrain.study`` left under ``OUT``: per plan and corpus the
evaluation ``OUT/<plan>/<corpus>/report/eval.json`` (whole validation split, seed
groups) and ``OUT/<plan>/results.jsonl``. Writes one Markdown page with

* the sweep: every variant's val ppl on each corpus, its change against tied, the
  rarest and the most frequent bucket, and the parameter count;
* the chosen variant at the tiny shape and the confirmation at the small shape: mean +- std
  over seeds for LEV, tied (and the isoparametric tied), whether the difference exceeds the
  seed spread, tokens-to-target both ways;
* the lev-vs-tied change at each shape side by side (the trend with scale),

and copies each evaluation's ``report.md`` and plots next to it, so the page is
self-contained in the repository.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from pretrain.evaluation.report import ttt_sentences

__all__ = ["write_study_report"]


def _load(out: Path, plan: str) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((out / plan).glob("*/report/eval.json")):
        found[path.parent.parent.name] = json.loads(path.read_text())
    return found


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:+.1f} %"


def _bucket_change(result: dict[str, Any], label: str, baseline: str, which: str) -> str:
    """Change of ``label`` vs ``baseline`` in the rarest (b1) or most frequent bucket."""
    groups = result["summary"]["groups"]
    rows = [b for b in groups[label]["buckets"] if b["bucket"] != "unseen"]
    base = [b for b in groups[baseline]["buckets"] if b["bucket"] != "unseen"]
    k = 0 if which == "rarest" else len(rows) - 1
    a, b = rows[k]["ppl_mean"], base[k]["ppl_mean"]
    if a is None or b is None or rows[k]["tokens"] < result["summary"]["min_bucket_tokens"]:
        return "n/a"
    return _pct(a / b - 1)


def _sweep_section(sweep: dict[str, dict[str, Any]]) -> list[str]:
    corpora = sorted(sweep)
    labels = [label for label in sweep[corpora[0]]["labels"]]
    lines = ["## Sweep (tiny shape, one seed)", "",
             "Each variant changes one thing from `lev`, the LEV before the study "
             "(`pretrain.study.STUDY_BASELINE`: seed_dim 8, grid 8, 4x fewer modes (128), "
             "extended knots, lr_mult 1). Change = ppl(variant) / ppl(tied) - 1 on the whole "
             "validation split; rarest = bucket b1, frequent = the most frequent bucket. "
             "Parameters: the Shakespeare run's (the same for WordNet).", ""]
    header = "| variant | parameters |" + "".join(
        f" {c} ppl | {c} vs tied | {c} rarest | {c} frequent |" for c in corpora)
    lines += [header, "|---|---:|" + "---:|---:|---:|---:|" * len(corpora)]
    for label in labels:
        params = sweep[corpora[0]]["summary"]["groups"][label]["params"]
        cells = [label, f"{params:,}" if params else "n/a"]
        for c in corpora:
            s = sweep[c]["summary"]
            g = s["groups"].get(label)
            if g is None:
                cells += ["-"] * 4
                continue
            tied = s["groups"]["tied"]["ppl_mean"]
            cells += [f"{g['ppl_mean']:.2f}", _pct(g["ppl_mean"] / tied - 1) if label != "tied"
                      else "-", _bucket_change(sweep[c], label, "tied", "rarest")
                      if label != "tied" else "-",
                      _bucket_change(sweep[c], label, "tied", "frequent")
                      if label != "tied" else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _sweep_plot(sweep: dict[str, dict[str, Any]], path: Path) -> None:
    """Bars: each variant's overall ppl change vs tied, one colour per corpus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = sorted(sweep)
    labels = [lb for lb in sweep[corpora[0]]["labels"] if lb != "tied"]
    width = 0.8 / len(corpora)
    fig, ax = plt.subplots(figsize=(10, 4))
    for j, corpus in enumerate(corpora):
        groups = sweep[corpus]["summary"]["groups"]
        tied = groups["tied"]["ppl_mean"]
        values = [100 * (groups[lb]["ppl_mean"] / tied - 1) if lb in groups else 0.0
                  for lb in labels]
        ax.bar([i + (j - (len(corpora) - 1) / 2) * width for i in range(len(labels))], values,
               width, label=corpus)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("val ppl vs tied (%)")
    ax.set_title("LEV variants vs tied, tiny shape, one seed (negative: LEV better)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _seed_section(title: str, slug: str, results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"## {title}", ""]
    for corpus, result in sorted(results.items()):
        s = result["summary"]
        ref = s["reference"]
        lines += [f"### {corpus}", "", "| run | parameters | ppl per seed | mean ± std |",
                  "|---|---:|---|---:|"]
        for label in s["labels"]:
            g = s["groups"][label]
            lines.append(f"| {label} | {g['params']:,} | "
                         f"{', '.join(f'{p:.2f}' for p in g['ppl'])} | "
                         f"{g['ppl_mean']:.2f} ± {g['ppl_std']:.2f} |")
        lines += ["", f"| {ref} vs | ppl change | paired per seed | exceeds seed spread | "
                      "rarest bucket | most frequent |", "|---|---:|---|---|---:|---:|"]
        for label in s["labels"][1:]:
            v = s["vs"][label]
            lines.append(f"| {label} | **{_pct(v['overall'])}** | "
                         f"{', '.join(_pct(p) for p in v['paired'])} | "
                         f"{'**yes**' if v['exceeds_seed_spread'] else 'no'} | "
                         f"{_bucket_change(result, ref, label, 'rarest')} | "
                         f"{_bucket_change(result, ref, label, 'frequent')} |")
        lines += ["", f"Tokens to target ({result['curve_description']}):", ""]
        for label in s["labels"][1:]:
            lines += [f"- {t}" for t in ttt_sentences(ref, label, s["vs"][label])]
        lines += ["", f"Full report: [{corpus}]({corpus}_{slug}/report.md)", ""]
    return lines


def _trend(shapes: list[tuple[str, dict[str, dict[str, Any]]]]) -> list[str]:
    lines = ["## LEV vs tied at both shapes", "",
             "| corpus | shape | variant | seeds | lev vs tied | lev vs tied-iso |",
             "|---|---|---|---|---:|---:|"]
    corpora = sorted({c for _, results in shapes for c in results})
    for corpus in corpora:
        for shape, results in shapes:
            if corpus not in results:
                continue
            s = results[corpus]["summary"]
            for label in s["labels"]:
                if not label.startswith("lev") or "tied" not in s["groups"]:
                    continue
                g, t = s["groups"][label], s["groups"]["tied"]
                iso = s["groups"].get("tied-iso")
                lines.append(f"| {corpus} | {shape} | {label} | {len(g['seeds'])} | "
                             f"{_pct(g['ppl_mean'] / t['ppl_mean'] - 1)} | "
                             f"{_pct(g['ppl_mean'] / iso['ppl_mean'] - 1) if iso else '-'} |")
    return lines


def _without_absolute_paths(text: str, out: Path) -> str:
    """``text`` with every path under the working directory or beside the study's ``out``
    written relative to it: a page kept in the repository names no machine's directories."""
    for base in (Path.cwd().resolve(), out.resolve().parent):  # the working directory first
        if len(base.parts) > 1:
            text = text.replace(f"{base}/", "")
    return text


def _copy_report(src: Path, dst: Path, out: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "eval.json"):
        if (src / name).is_file():
            text = (src / name).read_text(encoding="utf-8")
            (dst / name).write_text(_without_absolute_paths(text, out), encoding="utf-8")
    for name in ("loss_curves.png", "bucket_ppl.png"):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def write_study_report(out: Path, results_dir: Path) -> Path:
    """Summarise every evaluated plan under ``out`` into ``results_dir/README.md``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    sweep, seeds, confirm = _load(out, "sweep"), _load(out, "seeds"), _load(out, "confirm")
    lines = ["# LEV design study: measured results (400 steps, superseded)", "",
             "**Superseded** (measured 2026-11-29; replaced on 2026-12-05 by the 3000-step "
             "study at the 1.2B relative size, [lev_long](../lev_long/README.md), in which LEV "
             "trails its isoparametric tied baseline): a 400-step horizon and a LEV of 25 % of "
             "its table flatter LEV. Kept as the record of what each LEV choice does early in "
             "training.", "",
             "Written by `python -m pretrain.study report`; method, commands and conclusions "
             "in [docs/LEV.md](../../LEV.md#design-study-400-steps-superseded). Every number "
             "below is a measured validation perplexity over the whole validation split.", ""]
    if sweep:
        _sweep_plot(sweep, results_dir / "sweep.png")
        lines += _sweep_section(sweep) + ["", "![sweep](sweep.png)", ""]
        for corpus in sweep:
            _copy_report(out / "sweep" / corpus / "report", results_dir / f"{corpus}_sweep", out)
    for plan, title, slug, results in (
            ("seeds", "The chosen variant at the tiny shape, three seeds", "tiny", seeds),
            ("confirm", "Confirmation at the small shape (seeds as run)", "small", confirm)):
        if results:
            lines += _seed_section(title, slug, results)
            for corpus in results:
                _copy_report(out / plan / corpus / "report", results_dir / f"{corpus}_{slug}", out)
    if seeds or confirm:
        lines += _trend([("tiny (d=128, 2 layers)", seeds), ("small (d=160, 3 layers)", confirm)])
    page = results_dir / "README.md"
    page.write_text("\n".join(lines) + "\n")
    return page
