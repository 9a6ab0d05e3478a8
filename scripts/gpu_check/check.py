"""``run``: every part in order under the budget; OUT/gpu_check.json and .log.

Order: ``install`` (done by gpu_check.sh; recorded here), ``environment``,
``throughput_lev``, ``throughput_tied``, ``lev_vs_tied``, ``data``, ``train_resume``,
``evaluate``. A part that needs another's output is skipped when that one failed; the
training parts are skipped only for what environment.blocking_reason found for certain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .environment import blocking_reason, part_environment
from .evaluate import part_evaluate
from .plan import BUDGET_S
from .report import table
from .resume import part_train_resume
from .runner import Runner
from .shards import part_data
from .throughput import part_lev_vs_tied, part_throughput

__all__ = ["run_check"]


def _headline(env: dict[str, Any]) -> dict[str, Any]:
    """The summary's top: the torch that actually ran, the device, the layer spec."""
    torch = env.get("torch") or {}
    return {"torch": {k: torch.get(k) for k in ("version", "cuda", "origin", "path")},
            "device": env.get("gpu", "CPU" if env.get("cuda_available") is False else None),
            "layer_spec": env.get("layer_spec")}


def run_check(out: Path, work: Path, dry_run: bool) -> int:
    """Run every part; exit 0 when every part passed (the dry run's install excepted)."""
    runner = Runner(out, work, dry_run)
    install = os.environ.get("GPU_CHECK_INSTALL", "skipped: not run through "
                             "scripts/gpu_check.sh; this Python's own packages")
    status, _, detail = install.partition(": ")
    runner.say(f"gpu_check: {'dry run (CPU, tiny shapes, bf16, gloo)' if dry_run else 'GPU'}, "
               f"budget {BUDGET_S:.0f} s from the wrapper's start, work dir {work}")
    runner.record("install", status, **{"detail" if status == "pass" else "reason": detail})

    runner.run_part("environment", lambda limit: part_environment(runner, limit))
    env = runner.parts["environment"]
    runner.summary.update(_headline(env))
    blocked = blocking_reason(env, dry_run)
    for kind in ("lev", "tied"):
        if blocked:
            runner.record(f"throughput_{kind}", "skipped", reason=blocked)
        else:
            runner.run_part(f"throughput_{kind}",
                            lambda limit, kind=kind: part_throughput(runner, kind, limit, env))
    part_lev_vs_tied(runner)
    runner.run_part("data", lambda limit: part_data(runner, limit))
    if blocked:
        runner.record("train_resume", "skipped", reason=blocked)
    elif runner.parts["data"]["status"] != "pass":
        runner.record("train_resume", "skipped", reason="needs the data part's shards")
    else:
        runner.run_part("train_resume", lambda limit: part_train_resume(runner, limit))
    if blocked:
        runner.record("evaluate", "skipped", reason=blocked)
    elif not (work / "runs/straight/latest").is_file():
        runner.record("evaluate", "skipped", reason="needs a checkpoint from train_resume")
    else:
        runner.run_part("evaluate", lambda limit: part_evaluate(runner, limit))

    runner.summary["finished"] = True
    runner.write_summary()
    runner.say(table(runner.parts))
    ok = runner.summary["ok"]
    runner.say(f"summary: {out / 'gpu_check.json'}; log: {out / 'gpu_check.log'}; "
               f"{'every part passed' if ok else 'NOT every part passed'} "
               f"in {runner.summary['wall_s']:.0f} s")
    return 0 if ok else 1
