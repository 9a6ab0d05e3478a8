"""The LEV design study and the multi-seed embedding comparison, as one runner.

    python -m pretrain.study sweep   --out runs/study              # variants, tiny shape
    python -m pretrain.study confirm --out runs/study --variant lev-lr30   # 3 seeds, larger
    python -m pretrain.study compare --out runs/compare --corpora shakespeare  # what
                                     # scripts/compare_embeddings.sh runs
    python -m pretrain.study report  --out runs/study --results docs/results/lev_study
    python -m pretrain.study long    --out runs/study --lrs 5e-4 1e-3 2e-3   # the long
                                     # horizon: 3000 steps, validation curves, every arm on one lr grid
    python -m pretrain.study trend   --out runs/study --results docs/results/lev_long [--of compare]
    python -m pretrain.study size    --out runs/study --of long@long-d64 long long@long-d256 \
                                     --lrs 1e-3 --results docs/results/lev_long   # the gap
                                     # across bodies (at one lr, or each arm's best)
    python -m pretrain.study ladder table   # the GPU size ladder (docs/ladder.md)
    python -m pretrain.study size    --axis depth --out runs/study --lrs 1e-3 \
                                     --of long long@long-L4 long@long-L8 long@long-L16 \
                                     --results docs/results/lev_depth   # the gap against depth

A *plan* is a list of runs (corpus x variant x seed) at one *shape* (config overrides).
Every run is ``python -m pretrain.train`` in its own process (``--nproc`` ranks under
torchrun, or one plain process), ``--jobs`` of them at a time; a finished run is never
retrained and an interrupted one resumes from its checkpoint, so a study that is killed
loses at most the runs in flight. Each finished run appends one line to
``OUT/<plan>/results.jsonl``; when every run of a corpus is done, ``pretrain.evaluate``
compares the variants (seed groups) over the whole validation split into
``OUT/<plan>/<corpus>/report/``.

A seed changes the model init (``train.seed``, LEV's weights included) and the data
order (``data.shuffle_seed``) together. Corpora (``data_prep/sample_corpus.py``) are
built once under ``OUT/<corpus>/``: tokenizer trained on the training documents only
(``--val-fraction`` shared with ``shard.py``), vocab 4096, seq 128.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.cli import add_flag

__all__ = ["PLANS", "SHAPES", "VARIANTS", "Run", "main", "plan_runs"]

log = logging.getLogger("pretrain.study")

REPO = Path(__file__).resolve().parents[2]
CORPORA = ("shakespeare", "wordnet")
VOCAB_SIZE = 4096
SEQ_LENGTH = 128
VAL_FRACTION = 0.05

#: Config overrides per shape, on top of pretrain/configs/tiny_{lev,tied}.yaml.
SHAPES: dict[str, list[str]] = {
    # The tiny backbone of tiny_*.yaml: d=128, 2 layers, 4 heads, SwiGLU 352.
    "tiny": ["train.train_steps=400", "train.micro_batch_size=16", "train.global_batch_size=16",
             "optimizer.warmup_steps=20", "train.eval_interval=50", "train.eval_samples=256"],
    # Wider (d=160) and deeper (3 layers): the largest whose 3-seed x lev/tied/iso-tied x 2
    # corpora confirmation fits ~1 hour on 2 CPU cores (docs/results/lev_study)
    # (the same 400 steps: longer runs do not fit that hour).
    "small": ["model.hidden_size=160", "model.num_layers=3", "model.num_attention_heads=5",
              "model.ffn_hidden_size=432", "train.train_steps=400",
              "train.micro_batch_size=16", "train.global_batch_size=16",
              "optimizer.warmup_steps=20", "train.eval_interval=50", "train.eval_samples=256"],
    # scripts/compare_embeddings.sh's default: the tiny backbone for 3000 steps
    # (short runs flatter LEV, which leads early and can fall behind later).
    "compare": ["train.train_steps=3000", "optimizer.warmup_steps=60", "train.eval_interval=100",
                "train.eval_samples=512"],
    # The long-horizon study: the tiny backbone, 3000 steps x 16 x 128 tokens (6.1M tokens,
    # ~2 epochs of either corpus), the validation curve on a fixed 256-sample subset every
    # 100 steps, so the gap's trend over the second half of training can be fitted.
    "long": ["train.train_steps=3000", "train.micro_batch_size=16", "train.global_batch_size=16",
             "optimizer.warmup_steps=60", "train.eval_interval=100", "train.eval_samples=256"],
    # The body-size trend (see docs/LEV.md): a smaller body (d=64, 2 layers) and a larger
    # one (d=256, 4 layers) around the tiny backbone, each at the same 3000 x 16 x 128 tokens.
    "long-d64": ["model.hidden_size=64", "model.num_layers=2", "model.num_attention_heads=2",
                 "model.ffn_hidden_size=176", "train.train_steps=3000",
                 "train.micro_batch_size=16", "train.global_batch_size=16",
                 "optimizer.warmup_steps=60", "train.eval_interval=100",
                 "train.eval_samples=256"],
    "long-d256": ["model.hidden_size=256", "model.num_layers=4", "model.num_attention_heads=4",
                  "model.ffn_hidden_size=704", "train.train_steps=3000",
                  "train.micro_batch_size=16", "train.global_batch_size=16",
                  "optimizer.warmup_steps=60", "train.eval_interval=100",
                  "train.eval_samples=256"],
}
# The depth trend (docs/LEV.md, "Depth"): the tiny backbone's width (d=128, 4 heads, SwiGLU
# 352) with 4, 8 and 16 layers at the `long` horizon; `long` itself is the 2-layer point.
# The paper's bodies are deep (lev_1b2.yaml: 22 layers) and LEV's input spans at most
# `num_modes` directions, which a deep body may undo and a shallow one cannot.
for _layers in (4, 8, 16):
    SHAPES[f"long-L{_layers}"] = [f"model.num_layers={_layers}", *SHAPES["long"]]

#: The LEV every study variant starts from (the defaults before the study), pinned so the
#: study reproduces whatever tiny_lev.yaml says now. ``compare`` uses tiny_lev.yaml as is.
STUDY_BASELINE = ["lev.seed_dim=8", "lev.grid_size=8", "lev.num_modes=128", "lev.num_coords=2",
                  "lev.share_codebooks=false", "lev.knots=extended", "lev.lr_mult=1.0",
                  "lev.init_active_factors=2", "lev.seed_init_std=1.5",
                  "lev.lr_mult_schedule=constant", "lev.output_norm=false"]

#: LEV variants: overrides on top of STUDY_BASELINE (study plans) or tiny_lev.yaml
#: (compare). "tied", "tied-iso" and "untied" are the baselines on the same backbone.
VARIANTS: dict[str, list[str]] = {
    "tied": ["model.embedding=tied"],
    "tied-iso": ["model.embedding=tied"],  # + the widened FFN, computed per shape
    "untied": ["model.embedding=untied"],
    "lev": [],
    "lev-interior": ["lev.knots=interior"],
    "lev-lr10": ["lev.lr_mult=10"],
    "lev-lr30": ["lev.lr_mult=30"],
    "lev-s16": ["lev.seed_dim=16"],
    "lev-r512": ["lev.num_modes=512"],
    "lev-k3": ["lev.num_coords=3"],
    "lev-shared": ["lev.share_codebooks=true"],
    "lev-act1": ["lev.init_active_factors=1"],
    # The long-horizon hypotheses, on top of tiny_lev.yaml (the 1.2B relative size).
    "lev-lrcos": ["lev.lr_mult_schedule=cosine"],
    "lev-g16": ["lev.grid_size=16"],
    "lev-k4": ["lev.num_coords=4"],
    "lev-lr10x": ["lev.lr_mult=10"],
    # Every token at a tied table's init scale: RMS-normalised output, learned gain.
    "lev-norm": ["lev.output_norm=true"],
    # More identity per token at the same budget: 2x the seed, half the modes (16,384 LEV
    # parameters at the tiny shape against 18,432).
    "lev-s32r32": ["lev.seed_dim=32", "lev.num_modes=32"],
    # The input's rank: LEV's embeddings span at most num_modes directions. tiny_lev.yaml
    # has R/d = 0.5 (as lev_1b2.yaml); these give R/d = 1 and 2 at d=128.
    "lev-r128": ["lev.num_modes=128"],
    "lev-r256": ["lev.num_modes=256"],
    # One reading of the paper's "aggregation layers": modes -> SiLU MLP -> width instead of
    # one projection. Hidden width d lifts the rank to d at exactly lev-r128's parameters,
    # so the pair separates "nonlinear aggregation" from "more modes".
    "lev-agg": ["lev.aggregation=mlp", "lev.aggregation_hidden=128"],
}

#: plan -> (shape, variants, seeds). ``confirm`` and ``compare`` take their LEV variant
#: from ``--variant``; the first variant is the comparison's reference.
PLANS: dict[str, tuple[str, list[str], list[int]]] = {
    "sweep": ("tiny", ["lev", "tied", "lev-interior", "lev-lr10", "lev-lr30", "lev-s16",
                       "lev-r512", "lev-k3", "lev-shared", "lev-act1"], [1]),
    "confirm": ("small", ["{variant}", "tied", "tied-iso", "untied"], [1, 2, 3]),
    # The chosen variant and tied at the sweep's shape with the confirmation's seeds.
    "seeds": ("tiny", ["{variant}", "tied"], [1, 2, 3]),
    "compare": ("compare", ["{variant}", "tied", "tied-iso", "untied"], [1, 2, 3]),
    # LEV at the 1.2B config's relative size (tiny_lev.yaml) against its
    # isoparametric tied first, then tied and untied; every arm over the same lr grid.
    "long": ("long", ["{variant}", "tied-iso", "tied", "untied"], [1, 2]),
}

#: Plans whose LEV variants start from STUDY_BASELINE; the others from tiny_lev.yaml as is.
BASELINE_PLANS = ("sweep", "confirm", "seeds")

#: The `long` plan's LEV variants as they were measured, before tiny_lev.yaml turned
#: `lev.output_norm` on: pinned so the published long-horizon and depth numbers reproduce
#: (the `lev-norm` variant's own override still turns it on).
LONG_BASELINE = ["lev.output_norm=false"]


@dataclass(slots=True)
class Run:
    """One training run of the plan."""

    plan: str
    corpus: str
    variant: str
    seed: int
    overrides: list[str] = field(default_factory=list)
    #: for ``tied-iso``: the overrides of the LEV run whose parameter count it matches
    iso_reference: list[str] | None = None
    #: peak learning rate of an lr grid (``--lrs``); None: the config's
    lr: float | None = None
    #: the shape, when ``--shape`` replaces the plan's own (runs of another shape live in
    #: their own plan directory, so they can never be mistaken for finished ones)
    shape: str | None = None
    #: the step count, when ``--steps`` replaces the shape's own (its own directory too)
    steps: int | None = None

    @property
    def plan_dir(self) -> str:
        """``OUT/<plan_dir>`` holds this run: the plan, ``plan@shape`` for another shape,
        each with ``@<N>steps`` for another step count."""
        parts = [self.plan, *([self.shape] if self.shape else []),
                 *([f"{self.steps}steps"] if self.steps else [])]
        return "@".join(parts)

    @property
    def arm(self) -> str:
        """The variant with its grid lr, e.g. ``tied-iso@lr2e-03``: one evaluation group."""
        return self.variant if self.lr is None else f"{self.variant}@lr{self.lr:.0e}"

    @property
    def name(self) -> str:
        return f"{self.corpus}/{self.arm}/seed{self.seed}"


def plan_runs(plan: str, corpora: list[str], variant: str = "lev",
              seeds: list[int] | None = None, shape: str | None = None,
              lrs: list[float] | None = None, steps: int | None = None) -> list[Run]:
    """The runs of ``plan`` (seeds outermost, so an early stop leaves whole seeds; then
    corpora, lrs and variants, so the first runs done are each LEV and its baselines).

    ``steps`` replaces the shape's step count (the lr schedule follows it) and evaluates
    the subset about 30 times over the run, at steps that divide it, so the last point is
    the final model.
    """
    shape_name, variants, plan_seeds = PLANS[plan]
    other_shape = shape if shape not in (None, shape_name) else None
    shape_name = shape or shape_name
    steps = None if steps in (None, _steps_of(SHAPES[shape_name])) else steps
    step_overrides = [] if steps is None else [f"train.train_steps={steps}",
                                               f"train.eval_interval={eval_interval_for(steps)}"]
    variants = [v.format(variant=variant) for v in variants]
    runs = []
    for seed in seeds or plan_seeds:
        for corpus in corpora:
            for lr in lrs or [None]:
                # min_lr keeps the configs' ratio of 1/10 of the peak.
                lr_overrides = [] if lr is None else [f"optimizer.lr={lr}",
                                                      f"optimizer.min_lr={lr / 10}"]
                for v in variants:
                    extra = VARIANTS[v] if v in VARIANTS else _variant_overrides(v)
                    if v.startswith("lev") and plan in BASELINE_PLANS:
                        extra = [*STUDY_BASELINE, *extra]
                    elif v.startswith("lev") and plan == "long":
                        extra = [*LONG_BASELINE, *extra]
                    runs.append(Run(plan, corpus, v, seed,
                                    [*SHAPES[shape_name], *extra, *lr_overrides,
                                     *step_overrides, f"train.seed={seed}",
                                     f"data.shuffle_seed={seed}"], lr=lr,
                                    shape=other_shape, steps=steps))
    reference = next((r.overrides for r in runs if r.variant.startswith("lev")), None)
    for r in runs:
        if r.variant == "tied-iso":
            r.iso_reference = reference
    return runs


def _variant_overrides(name: str) -> list[str]:
    """``lev+a+b``: the union of known variants' overrides (a combination)."""
    parts = name.split("+")
    if parts[0] != "lev" or any(f"lev-{p}" not in VARIANTS for p in parts[1:]):
        raise SystemExit(f"unknown variant {name!r}; combine as lev+lr30+s16 from {sorted(VARIANTS)}")
    return [o for p in parts[1:] for o in VARIANTS[f"lev-{p}"]]


#: corpus name -> shard directory for corpora given with ``--data-path`` (not built here).
EXTERNAL_DATA: dict[str, Path] = {}


def shard_path(out: Path, corpus: str) -> Path:
    return EXTERNAL_DATA.get(corpus, out / corpus / "shards")


def data_overrides(shards: Path) -> list[str]:
    """``model.vocab_size`` (padded to a multiple of 128) and ``model.seq_length`` of the
    tiny configs, set from a user's shard manifest, so any tokenizer's shards compare."""
    manifest = json.loads((shards / "manifest.json").read_text())
    vocab = manifest["tokenizer"]["vocab_size"]
    return [f"model.vocab_size={-(-vocab // 128) * 128}",
            f"model.seq_length={manifest['seq_length']}"]


def prepare_corpus(out: Path, corpus: str) -> Path:
    """Build ``OUT/<corpus>/shards`` once (corpus -> train-only tokenizer -> shards)."""
    if corpus in EXTERNAL_DATA:
        return EXTERNAL_DATA[corpus]
    root = out / corpus
    shards = root / "shards"
    if (shards / "manifest.json").is_file():
        return shards
    py = sys.executable
    steps = [
        [py, "data_prep/sample_corpus.py", "--corpus", corpus, str(root / "corpus")],
        [py, "data_prep/train_tokenizer.py", "--input", str(root / "corpus"), "--output",
         str(root / "tokenizer.json"), "--vocab-size", str(VOCAB_SIZE),
         "--val-fraction", str(VAL_FRACTION)],
        [py, "data_prep/shard.py", "--input", str(root / "corpus"), "--tokenizer",
         str(root / "tokenizer.json"), "--output", str(shards), "--seq-length",
         str(SEQ_LENGTH), "--val-fraction", str(VAL_FRACTION), "--shard-size-mb", "2",
         "--no-progress"],
    ]
    for cmd in steps:
        log.info("%s", " ".join(cmd))
        subprocess.run(cmd, cwd=REPO, check=True)
    return shards


def _config_file(variant: str) -> str:
    return "tiny_tied.yaml" if variant.startswith("tied") else (
        "tiny_untied.yaml" if variant == "untied" else "tiny_lev.yaml")


def _isoparametric_override(run: Run) -> list[str]:
    """``model.ffn_hidden_size`` of the tied model matched to this shape's LEV run."""
    if run.variant != "tied-iso":
        return []
    if run.iso_reference is None:
        raise SystemExit("tied-iso needs a LEV variant in the same plan to match")
    overrides = [o for o in run.iso_reference if not o.startswith("model.embedding")]
    cmd = [sys.executable, "-m", "pretrain.params", "--config",
           str(REPO / "pretrain/configs/tiny_lev.yaml"), *overrides, "--isoparametric"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    ffn = out.rsplit("model.ffn_hidden_size=", 1)[1].split()[0]
    return [f"model.ffn_hidden_size={ffn}"]


def _steps_of(overrides: list[str]) -> int:
    """``train.train_steps`` as the overrides set it (the last setting wins)."""
    return int(next(o for o in reversed(overrides) if o.startswith("train.train_steps="))
               .split("=")[1])


#: Evaluations of the subset per run that ``--steps`` accepts (the trainer evaluates every
#: ``eval_interval`` steps, so the interval must divide the step count to reach the end).
EVALUATIONS = (15, 60)


def eval_interval_for(steps: int, evaluations: int = 30) -> int | None:
    """The divisor of ``steps`` nearest ``steps / evaluations`` (the larger on a tie), or
    None when no divisor gives between ``EVALUATIONS`` evaluations (a prime, say)."""
    low, high = EVALUATIONS
    divisors = [d for d in range(1, steps + 1) if steps % d == 0 and low <= steps // d <= high]
    if not divisors:
        return None
    return min(divisors, key=lambda d: (abs(d - steps / evaluations), -d))


def check_steps(steps: int) -> str | None:
    """Why ``--steps`` cannot be ``steps`` (with the nearest counts that can), or None."""
    if steps < 1:
        return f"--steps {steps} must be >= 1"
    if steps >= EVALUATIONS[0] and eval_interval_for(steps) is not None:
        return None
    near = [n for n in range(max(EVALUATIONS[0], steps - 50), steps + 51)
            if eval_interval_for(n) is not None]
    closest = sorted(near, key=lambda n: (abs(n - steps), n))[:2]
    return (f"--steps {steps}: no evaluation interval divides it into {EVALUATIONS[0]}-"
            f"{EVALUATIONS[1]} evaluations, so the final model would not be evaluated; use "
            + " or ".join(map(str, sorted(closest))))


def save_dir(out: Path, run: Run) -> Path:
    return out / run.plan_dir / run.corpus / run.arm / f"seed{run.seed}"


def _finished(path: Path, steps: int) -> bool:
    latest = path / "latest"
    if not latest.is_file():
        return False
    meta = path / latest.read_text().strip() / "meta.json"
    return meta.is_file() and json.loads(meta.read_text())["step"] >= steps


def train_run(out: Path, run: Run, nproc: int) -> dict:
    """Train one run to completion (resuming if interrupted); returns its results line."""
    path = save_dir(out, run)
    overrides = [*run.overrides, *_isoparametric_override(run)]
    steps = _steps_of(overrides)
    # Checkpoint cadence first, so a run's own overrides may change it; where the run lives
    # and how it resumes last, so nothing can.
    overrides = ["checkpoint.save_interval=100", "checkpoint.keep_last=1", *overrides,
                 f"optimizer.decay_steps={steps}", f"data.path={shard_path(out, run.corpus)}",
                 f"checkpoint.save_dir={path}", "checkpoint.resume=auto"]
    start = time.monotonic()
    trained = not _finished(path, steps)
    if trained:
        path.mkdir(parents=True, exist_ok=True)
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", str(nproc)] if nproc > 1 else [sys.executable]
        cmd = [*launcher, "-m", "pretrain.train", "--config",
               str(REPO / "pretrain/configs" / _config_file(run.variant)), *overrides]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        with open(path / "train.log", "a") as logf:
            proc = subprocess.run(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                  check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{run.name} failed (exit {proc.returncode}); see {path}/train.log")
    vals = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()
            if '"val_loss"' in line]
    # One point per step: a resumed run re-evaluates the steps after its last checkpoint.
    curve = {v["step"]: round(v["val_loss"], 5) for v in vals}
    from pretrain.study.trend import run_meta

    # The resolved config travels with the line: reports read it once the runs are gone.
    config = run_meta({"save_dir": str(path), "corpus": run.corpus, "variant": run.variant,
                       "seed": run.seed})["config"]
    return {"plan": run.plan, "shape": run.shape, "corpus": run.corpus, "variant": run.variant,
            "lr": run.lr, "arm": run.arm, "seed": run.seed, "save_dir": str(path), "overrides": overrides,
            "steps": steps, "final_subset_val_loss": vals[-1]["val_loss"] if vals else None,
            "val_curve": sorted(curve.items()), "config": config,
            "wall_s": round(time.monotonic() - start, 1), "trained": trained}


def evaluate_corpus(out: Path, plan: str, corpus: str, runs: list[Run], nproc: int) -> Path:
    """``pretrain.evaluate`` with one ``--variant`` group per arm; returns the report dir
    (``plan`` is the runs' plan directory)."""
    report = out / plan / corpus / "report"
    groups: dict[str, list[str]] = {}
    for run in runs:
        groups.setdefault(run.arm, []).append(str(save_dir(out, run)))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", str(nproc)] if nproc > 1 else [sys.executable]
    cmd = [*launcher, "-m", "pretrain.evaluate", "--data-path", str(shard_path(out, corpus)),
           "--output", str(report)]
    for name, dirs in groups.items():
        cmd += ["--variant", name, *dirs]
    with open(out / plan / corpus / "evaluate.log", "w") as logf:
        subprocess.run(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    return report


def run_plan(out: Path, runs: list[Run], jobs: int, nproc: int, evaluate: bool = True,
             cloze: bool = True) -> None:
    """Train every run (``jobs`` at a time), log results, then evaluate per corpus (and, for
    ``compare``, score the offline lm-eval task, ``pretrain/study/cloze.py``)."""
    plan, plan_dir = runs[0].plan, runs[0].plan_dir
    (out / plan_dir).mkdir(parents=True, exist_ok=True)
    results = out / plan_dir / "results.jsonl"
    for corpus in sorted({r.corpus for r in runs}):
        prepare_corpus(out, corpus)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(train_run, out, r, nproc): r for r in runs}
        for future in concurrent.futures.as_completed(futures):
            run = futures[future]
            try:
                line = future.result()
            except RuntimeError as exc:  # one failed run must not stop the others
                log.error("%s", exc)
                line = {"plan": run.plan, "corpus": run.corpus, "variant": run.variant,
                        "arm": run.arm, "seed": run.seed, "error": str(exc)}
            if not line.get("trained", True):
                continue  # finished in an earlier invocation: its line is already there
            with results.open("a") as f:
                f.write(json.dumps(line) + "\n")
            if "error" not in line:
                log.info("%s done in %.0f s: subset val loss %s", run.name, line["wall_s"],
                         line["final_subset_val_loss"])
    if plan in ("compare", "long"):
        # LEV's gap to each baseline over training, with its verdict (pretrain/study/trend.py).
        from pretrain.study.trend import write_trend_report

        log.info("%s: %s", plan_dir, write_trend_report(results, out / plan_dir / "trend"))
    if evaluate:
        for corpus in sorted({r.corpus for r in runs}):
            report = evaluate_corpus(out, plan_dir, corpus,
                                     [r for r in runs if r.corpus == corpus], nproc=jobs)
            log.info("%s %s: %s", plan, corpus, report / "report.md")
            if plan == "compare" and cloze:
                from pretrain.study.cloze import score_corpus

                groups: dict[str, list[Path]] = {}
                for r in runs:
                    if r.corpus == corpus:
                        groups.setdefault(r.arm, []).append(save_dir(out, r))
                log.info("%s %s: %s", plan, corpus,
                         score_corpus(shard_path(out, corpus), report, groups))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ladder"]:  # the GPU size ladder has its own arguments (table | report)
        from pretrain.study.ladder import main as ladder_main

        return ladder_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", choices=[*PLANS, "report", "trend", "size"],
                        help="which runs to train and evaluate, `report` to summarise them, "
                             "`trend` for the gap-over-training report of the `long` plan, or "
                             "`size` for LEV's gap to tied-iso across the bodies of --of")
    parser.add_argument("--out", default="runs/study", help="runs, corpora and reports")
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=CORPORA,
                        help="corpora built from packages under OUT/<corpus>/ (default: both)")
    add_flag(parser, "--data-path", deprecated=("--data-dir",), default=None,
             help="your own shard directory (data_prep/shard.py output) instead of "
                             "--corpora; the tiny configs need model.vocab_size >= its vocab")
    parser.add_argument("--variant", default="lev",
                        help="LEV variant of confirm/compare (a name from VARIANTS, or a "
                             "combination such as lev+lr30+s16)")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="sweep: train only these variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="override the seeds")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None,
                        help="override the plan's shape")
    parser.add_argument("--steps", type=int, default=None,
                        help="override train.train_steps (runs go to PLAN[@SHAPE]@<N>steps; "
                             "the subset is evaluated ~30 times, every divisor of N steps)")
    parser.add_argument("--lrs", nargs="+", type=float, default=None,
                        help="peak learning rates: every variant is trained at each (min_lr = "
                             "lr/10), so every arm gets the same tuning; size: compare every "
                             "size at the first (default: each arm at its best)")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once")
    parser.add_argument("--nproc", type=int, default=1, help="ranks per run")
    parser.add_argument("--no-evaluate", action="store_true", help="train only")
    parser.add_argument("--no-cloze", action="store_true",
                        help="compare: skip the offline lm-eval task (export + lm_eval per run)")
    parser.add_argument("--of", nargs="+", default=["long"],
                        help="trend: the plan directory whose validation curves are fitted "
                             "(a plan; PLAN@SHAPE for runs trained with --shape, "
                             "...@<N>steps with --steps); size: "
                             "one plan directory per body size")
    parser.add_argument("--axis", choices=("body", "depth"), default="body",
                        help="size: the gap against the body's parameters (size.md) or, for "
                             "plans of one width, against its number of layers (depth.md)")
    parser.add_argument("--results", default="docs/results/lev_study",
                        help="report / trend: where the summary goes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.out).resolve()
    if args.plan == "report":
        from pretrain.study.report import write_study_report

        print(write_study_report(out, Path(args.results)))
        return 0
    if args.plan == "trend":
        from pretrain.study.trend import write_trend_report

        if len(args.of) != 1:
            parser.error("trend takes one --of")
        print(write_trend_report(out / args.of[0] / "results.jsonl", Path(args.results)))
        return 0
    if args.steps is not None and (why := check_steps(args.steps)):
        parser.error(why)
    if args.plan == "size":
        from pretrain.study.size import write_size_report

        lr = args.lrs[0] if args.lrs else None
        print(write_size_report(out, args.of, Path(args.results), lr=lr, axis=args.axis))
        return 0
    corpora = args.corpora
    if args.data_path:
        name = Path(args.data_path).resolve().name
        EXTERNAL_DATA[name] = Path(args.data_path).resolve()
        corpora = [name]
    runs = plan_runs(args.plan, corpora, args.variant, args.seeds, args.shape, args.lrs,
                     args.steps)
    for r in runs:
        r.overrides += data_overrides(shard_path(out, r.corpus)) if r.corpus in EXTERNAL_DATA else []
    if args.variants:
        runs = [r for r in runs if r.variant in args.variants]
    run_plan(out, runs, args.jobs, args.nproc, evaluate=not args.no_evaluate,
             cloze=not args.no_cloze)
    return 0

