"""The offline lm-eval task in the embedding comparison: export every run, score ``lev_cloze``.

Used by ``python -m pretrain.study compare`` (``scripts/compare_embeddings.sh``) after the
perplexity evaluation: per corpus, the task is built once from the validation split
(``pretrain/evaluation/cloze_task.py``), each run's final checkpoint is exported to ``SAVE_DIR/hf``
(``pretrain/export/hf.py``) and scored by lm-evaluation-harness; ``report/cloze.md`` and
``report/cloze.json`` hold accuracy and target-word perplexity per variant, mean ± std over
seeds.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
from pathlib import Path

__all__ = ["cloze_table", "score_corpus"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], logf) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, check=True, env=env)


def score_run(save_dir: Path, task_dir: Path, logf) -> dict[str, float]:
    """Export ``save_dir``'s final checkpoint (once) and score it on ``lev_cloze``."""
    hf = save_dir / "hf"
    if not (hf / "config.json").is_file():
        _run([sys.executable, "-m", "pretrain.export_hf", "--checkpoint", str(save_dir),
              "--output", str(hf), "--force"], logf)
    out = save_dir / "lm_eval"
    _run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
          f"pretrained={hf},dtype=float32", "--include_path", str(task_dir), "--tasks",
          "lev_cloze", "--device", "cpu", "--output_path", str(out)], logf)
    newest = max(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    result = json.loads(newest.read_text())["results"]["lev_cloze"]
    return {"acc": result["acc,none"], "ppl": result["perplexity,none"]}


def cloze_table(scores: dict[str, list[dict[str, float]]], items: int) -> str:
    """Markdown: accuracy and target-word perplexity per variant (mean ± std over seeds)."""
    def stat(values: list[float], fmt: str) -> str:
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:{fmt}} ± {std:{fmt}}"

    lines = [f"# Offline lm-eval task `lev_cloze` ({items} held-out passages)", "",
             "Accuracy: the target word is the greedy continuation; perplexity: of the target "
             "word's tokens (lm-evaluation-harness, `--model hf`, fp32, on each run's export).",
             "", "| variant | seeds | accuracy | target-word perplexity |", "|---|---:|---:|---:|"]
    for variant, runs in scores.items():
        lines.append(f"| {variant} | {len(runs)} | {stat([r['acc'] for r in runs], '.4f')} | "
                     f"{stat([r['ppl'] for r in runs], '.1f')} |")
    return "\n".join(lines) + "\n"


def score_corpus(shards: Path, report: Path, runs: dict[str, list[Path]]) -> Path:
    """Build the task from ``shards``, score every run (variant -> save_dirs); returns cloze.md."""
    task = report.parent / "cloze_task"
    report.mkdir(parents=True, exist_ok=True)
    with open(report.parent / "cloze.log", "a") as logf:
        _run([sys.executable, "-m", "pretrain.cloze_task", "--data-path", str(shards), "--output",
              str(task)], logf)
        items = len((task / "lev_cloze.jsonl").read_text().splitlines())
        scores = {variant: [score_run(d, task, logf) for d in dirs]
                  for variant, dirs in runs.items()}
    (report / "cloze.json").write_text(json.dumps(scores, indent=1))
    path = report / "cloze.md"
    path.write_text(cloze_table(scores, items))
    return path
