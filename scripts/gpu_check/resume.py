"""The ``train_resume`` part: bf16 train -> save -> resume -> continue through pretrain.train.

8 steps saving at step 4; then a copy of step 4 resumed to step 8; the losses of steps 5-8
must be bitwise equal. Only if they are not (and time is left) is the straight run
repeated, to tell nondeterministic kernels from a resume error. In the dry run the same
bf16 path runs on CPU (gloo), which the trainer allows only under ``LEV_ALLOW_CPU_BF16=1``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from .plan import DRY_SMALL_RUN, SMALL_RUN
from .runner import Limit, PartFailed, Runner

__all__ = ["compare_losses", "part_train_resume", "resume_verdict", "train_records"]

# Set before pretrain.train runs (it has no switch of its own): deterministic kernels where
# torch has them (warn_only: an op without one logs a warning, which the part collects),
# and cuBLAS's fixed-workspace mode that determinism needs. Not filling fresh tensors with
# NaN (torch's default under deterministic mode, a debugging aid) keeps the steps as fast as
# without the flag: with it, a step of the dry run took 20x longer.
DETERMINISTIC_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONHASHSEED": "0"}
DETERMINISTIC_FLAGS = {"torch.use_deterministic_algorithms": "True, warn_only=True",
                       "torch.utils.deterministic.fill_uninitialized_memory": False,
                       "torch.backends.cudnn.deterministic": True,
                       "torch.backends.cudnn.benchmark": False}
DETERMINISTIC_MAIN = (
    "import runpy, torch; torch.use_deterministic_algorithms(True, warn_only=True); "
    "torch.utils.deterministic.fill_uninitialized_memory = False; "
    "torch.backends.cudnn.deterministic = True; torch.backends.cudnn.benchmark = False; "
    "runpy.run_module('pretrain.train', run_name='__main__', alter_sys=True)")
# The trainer refuses bf16 without CUDA (emulated bf16 is slow for real runs); the dry
# run's tiny model takes seconds, and it is the point: the same BF16_Optimizer path.
CPU_BF16_ENV = {"LEV_ALLOW_CPU_BF16": "1"}


def train_records(save_dir: Path) -> dict[int, dict[str, Any]]:
    """metrics.jsonl's training records by step."""
    lines = (save_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if "loss" in r}


def compare_losses(a: dict[int, dict], b: dict[int, dict], steps: list[int],
                   names: tuple[str, str]) -> dict[str, Any]:
    """Losses of runs ``a`` and ``b`` at ``steps`` (JSON floats round-trip exactly)."""
    missing = [s for s in steps if s not in a or s not in b]
    if missing:
        raise PartFailed(f"no training record for steps {missing}")
    bad = [s for s in steps if a[s]["loss"] is None or b[s]["loss"] is None]
    if bad:  # metrics.jsonl writes a non-finite loss as null
        raise PartFailed(f"non-finite loss at steps {bad}")
    diffs = [abs(a[s]["loss"] - b[s]["loss"]) for s in steps]
    return {f"{names[0]}_losses": [a[s]["loss"] for s in steps],
            f"{names[1]}_losses": [b[s]["loss"] for s in steps],
            "bitwise_equal": all(a[s]["loss"] == b[s]["loss"] for s in steps),
            "max_abs_diff": max(diffs),
            "max_rel_diff": max(d / abs(a[s]["loss"]) for d, s in zip(diffs, steps, strict=True)),
            "same_samples": all(a[s].get("sample_ids") == b[s].get("sample_ids") for s in steps)}


def resume_verdict(fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Pass: bit for bit; or, where repeating the uninterrupted run differs as well (kernels
    without a deterministic implementation), within 1 % relative."""
    if not fields["same_samples"]:
        return "fail", {"reason": "the resumed run read other samples", **fields}
    if fields["bitwise_equal"]:
        return "pass", fields
    repeat = fields.get("repeat_of_straight_run")
    if repeat is None:
        return "fail", {"reason": "resumed losses differ and no time was left to tell kernel "
                                  "nondeterminism from a resume error", **fields}
    if repeat["bitwise_equal"]:
        return "fail", {"reason": "resumed losses differ though a repeat of the straight run is "
                                  "bitwise equal: resume is not exact", **fields}
    if fields["max_rel_diff"] <= 0.01:
        return "pass", {"note": "not bitwise: a repeat of the straight run differs too "
                                "(nondeterministic kernels); within 1 % relative", **fields}
    return "fail", {"reason": f"resumed losses differ by {fields['max_rel_diff']:.2%} relative",
                    **fields}


def _find(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def part_train_resume(runner: Runner, limit: Limit) -> tuple[str, dict[str, Any]]:
    """8 straight bf16 steps, then steps 5-8 again from the step-4 checkpoint; compared."""
    shards, runs = runner.work / "shards", runner.work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    base = ["-c", DETERMINISTIC_MAIN, "--config", "pretrain/configs/tiny_lev.yaml",
            *SMALL_RUN, *(DRY_SMALL_RUN if runner.dry_run else []), f"data.path={shards}"]
    env = {**DETERMINISTIC_ENV, **(CPU_BF16_ENV if runner.dry_run else {})}

    def train(save_dir: Path) -> str:
        return runner.python("train_resume", [*base, f"checkpoint.save_dir={save_dir}"],
                             limit(), env=env)

    log = train(runs / "straight")
    tag = runs / "straight" / "step00000004"
    if not (tag / "meta.json").is_file():
        raise PartFailed(f"the 8-step run left no complete checkpoint at {tag}")
    shutil.copytree(tag, runs / "resumed" / tag.name)  # as if it had stopped there
    (runs / "resumed" / "latest").write_text(tag.name + "\n")
    resumed_log = train(runs / "resumed")
    if f"resumed from {runs / 'resumed' / tag.name}" not in resumed_log:
        raise PartFailed("the second run did not say 'resumed from ...step00000004'")
    straight, resumed = train_records(runs / "straight"), train_records(runs / "resumed")
    steps = list(range(5, 9))
    fields = compare_losses(straight, resumed, steps, ("straight", "resumed"))
    fields.update(
        precision=_find(r"ZeRO-\d, (\w+),", log), backend=_find(r"backend (\w+)", log),
        layer_spec=_find(r"layer spec: (\S+)", log), resumed_steps=steps,
        optimizer_states=sorted(p.name for p in tag.glob("*optim_states.pt")),
        command=f"python -c <deterministic flags; runpy pretrain.train> {shlex.join(base[2:])}",
        determinism={"env": env, **DETERMINISTIC_FLAGS,
                     "ops_without_deterministic_kernel": sorted(set(re.findall(
                         r"(\S+) does not have a deterministic implementation",
                         log + resumed_log)))})
    expected = "gloo" if runner.dry_run else "nccl"
    if fields["backend"] != expected:
        return "fail", {"reason": f"trained on backend {fields['backend']}, not {expected}",
                        **fields}
    if fields["bitwise_equal"] or not fields["same_samples"]:
        return resume_verdict(fields)
    if limit() > 30:  # not bitwise: is it the resume, or do the kernels differ run to run?
        runner.python("train_resume", [*base, f"checkpoint.save_dir={runs / 'repeat'}"],
                      limit(), env=env)
        repeat = compare_losses(straight, train_records(runs / "repeat"), list(range(1, 9)),
                                ("straight", "repeat"))
        fields["repeat_of_straight_run"] = repeat
    return resume_verdict(fields)
