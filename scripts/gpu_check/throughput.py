"""The ``throughput_lev`` / ``throughput_tied`` parts and ``lev_vs_tied``.

Each throughput part runs the ``throughput`` worker (measure.py) on the 1.2B config. On an
out-of-memory it halves the micro-batch and keeps the global batch (more accumulation
steps), so the model and the tokens per optimizer step stay those of the config; the JSON
says so. MFU is stated against the device's datasheet peak and the measured matmul ceiling
(peaks.py).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

from .peaks import mfu_fields
from .plan import DRY_THROUGHPUT, EXIT_OOM, PACKAGE, REPO
from .runner import Limit, Runner

__all__ = ["compare_step_times", "part_lev_vs_tied", "part_throughput", "smaller_micro_batch"]


def smaller_micro_batch(micro: int, global_batch: int) -> int:
    """The largest micro-batch at most half of ``micro`` that divides ``global_batch``."""
    return next(m for m in range(micro // 2, 0, -1) if global_batch % m == 0)


def part_throughput(runner: Runner, kind: str, limit: Limit,
                    env: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Time ``kind``'s 1.2B config; retry with half the micro-batch on an out-of-memory."""
    from pretrain.config import load_config

    part, config = f"throughput_{kind}", f"pretrain/configs/{kind}_1b2.yaml"
    overrides = DRY_THROUGHPUT if runner.dry_run else []
    train = load_config(REPO / config, overrides).train
    micro = configured = train.micro_batch_size
    attempts: list[dict[str, Any]] = []
    while True:
        path = runner.work / f"{part}_mb{micro}.json"
        code, _ = runner.command(part, [
            sys.executable, PACKAGE, "throughput", "--config", config, "--json", path,
            "--deadline", f"{time.time() + limit() - 10:.0f}", *overrides,
            f"train.micro_batch_size={micro}"], limit())
        result = json.loads(path.read_text()) if path.is_file() else {}
        if code != EXIT_OOM or micro == 1:
            break
        attempts.append({"micro_batch_size": micro, "outcome": result.get("error")})
        micro = smaller_micro_batch(micro, train.global_batch_size)
    fields = {**result, "config_micro_batch_size": configured,
              "micro_batch_reduced": micro != configured, "attempts": attempts}
    if micro != configured:
        fields["note"] = (
            f"measured at micro-batch {micro} of the config's {configured} (global batch "
            f"{train.global_batch_size} kept, so more accumulation steps): out of memory at "
            f"micro-batch {', '.join(str(a['micro_batch_size']) for a in attempts)}")
    if code == 0 and result.get("tokens_per_s", 0) > 0:
        matmul = (env.get("matmul") or {}).get("tflops")
        fields.update(mfu_fields(result["model_tflops_per_device"], result["device"],
                                 result["precision"], matmul))
        return "pass", fields
    reason = ("killed at its time limit" if code is None else
              f"out of memory down to micro-batch {micro}" if code == EXIT_OOM else
              f"the worker exited {code}; see the log")
    return "fail", {"reason": reason, **fields}


def compare_step_times(lev: list[float], tied: list[float]) -> dict[str, Any]:
    """LEV's step time over tied's, stated only where it is larger than the noise.

    Every LEV step over every tied step gives a range of ratios; when that range holds
    1.0 the two differ by less than their step-to-step noise, and no ratio is stated
    (``step_time_ratio`` None, ``note`` saying so).
    """
    ratios = [a / b for a in lev for b in tied]
    fields: dict[str, Any] = {"lev_step_times_s": lev, "tied_step_times_s": tied,
                              "per_step_ratio_range": [min(ratios), max(ratios)]}
    if len(lev) < 2 or len(tied) < 2:
        fields.update(step_time_ratio=None, note=(
            f"{len(lev)} lev and {len(tied)} tied timed step(s): too few to know the "
            "step-to-step noise, so no ratio is stated"))
    elif min(ratios) <= 1.0 <= max(ratios):
        fields.update(step_time_ratio=None, note=(
            f"lev and tied differ by less than their step-to-step noise (per-step ratios "
            f"{min(ratios):.3f} to {max(ratios):.3f}); no ratio is stated"))
    else:
        fields["step_time_ratio"] = statistics.fmean(lev) / statistics.fmean(tied)
    return fields


def part_lev_vs_tied(runner: Runner) -> None:
    """Record ``lev_vs_tied`` from the two throughput parts (no process of its own)."""
    lev, tied = runner.parts.get("throughput_lev", {}), runner.parts.get("throughput_tied", {})
    if lev.get("status") != "pass" or tied.get("status") != "pass":
        runner.record("lev_vs_tied", "skipped", reason="needs both throughput parts to pass")
    elif lev["micro_batch_size"] != tied["micro_batch_size"]:
        runner.record("lev_vs_tied", "skipped", reason=(
            f"measured at different micro-batches (lev {lev['micro_batch_size']}, tied "
            f"{tied['micro_batch_size']})"))
    else:
        runner.record("lev_vs_tied", "pass", micro_batch_size=lev["micro_batch_size"],
                      **compare_step_times(lev["step_times_s"], tied["step_times_s"]),
                      flops_per_token_ratio=(lev["model_flops_per_token"]
                                             / tied["model_flops_per_token"]),
                      param_ratio=lev["params"] / tied["params"])
