"""The ``environment`` part: nvidia-smi, then the ``env`` probe (probe.py), then a verdict.

The part itself never decides to skip the rest. ``blocking_reason`` does, and only on an
explicit finding: torch says there is no CUDA device, an import training needs raised, or
the all-reduce failed or hung. A probe that merely ran out of time proves nothing, so the
GPU parts still run (a slow cold start must not cost the whole check).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

from .plan import NVIDIA_SMI_TIMEOUT_S, PACKAGE, TRAINING_IMPORTS
from .runner import Limit, Runner, merged_json

__all__ = ["blocking_reason", "nvidia_smi", "part_environment"]


def nvidia_smi(timeout_s: float = NVIDIA_SMI_TIMEOUT_S) -> str:
    """The GPU's name, driver and memory from ``nvidia-smi``, or why there are none.

    Never raises: a missing binary, a hung driver (killed at ``timeout_s``) or an error
    exit each become the returned text.
    """
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "not found on PATH"
    try:
        proc = subprocess.Popen([smi, "--query-gpu=name,driver_version,memory.total",
                                 "--format=csv,noheader"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as exc:
        return f"could not start: {exc}"
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:  # a process stuck in the driver may not even die: do not wait on it for long
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        return f"timed out after {timeout_s:g} s"
    text = out.strip() or "no output"
    return text if proc.returncode == 0 else f"exited {proc.returncode}: {text}"


def part_environment(runner: Runner, limit: Limit) -> tuple[str, dict[str, Any]]:
    """nvidia-smi (10 s) and the probe (the rest of the part's 90 s); pass or fail."""
    smi = nvidia_smi()
    code, output = runner.command("environment", [sys.executable, PACKAGE, "env"], limit())
    info = {"nvidia_smi": smi, **merged_json(output)}
    problems = []
    if code is None:
        problems.append(f"the probe was killed at its time limit after stage "
                        f"{info.get('stage', 'none')!r}")
    elif code != 0:
        problems.append(f"the probe exited {code} after stage {info.get('stage', 'none')!r}")
    if "torch_error" in info:
        problems.append(f"import torch: {info['torch_error']}")
    if "device_error" in info:
        problems.append(f"CUDA device query: {info['device_error']}")
    broken = [m for m, r in info.get("imports", {}).items() if not r["ok"]]
    if broken:
        problems.append(f"not importable: {', '.join(broken)}")
    if not runner.dry_run and info.get("cuda_available") is False:
        problems.append("torch sees no CUDA device")
    if info.get("bf16_supported") is False:
        problems.append("the GPU has no bf16")
    reduce = info.get("all_reduce")
    if reduce is not None and not reduce.get("ok"):
        problems.append(f"all-reduce: {reduce.get('error')}")
    matmul = info.get("matmul")
    if matmul is not None and not matmul.get("tflops"):
        problems.append(f"bf16 matmul: {matmul.get('error')}")
    return ("fail", {"reason": "; ".join(problems), **info}) if problems else ("pass", info)


def blocking_reason(env: dict[str, Any], dry_run: bool) -> str | None:
    """Why the training parts cannot work, from what the environment part found for
    certain; None when nothing rules them out (an unfinished probe rules out nothing)."""
    if not dry_run and env.get("cuda_available") is False:
        return "torch reports no CUDA device (environment part)"
    imports = env.get("imports", {})
    broken = [m for m in TRAINING_IMPORTS if m in imports and not imports[m]["ok"]]
    if broken:
        return (f"training cannot import {broken[0]}: {imports[broken[0]]['error']} "
                "(environment part)")
    reduce = env.get("all_reduce")
    if reduce is not None and not reduce.get("ok"):
        backend = reduce.get("backend") or ("gloo" if dry_run else "nccl")
        return f"the world-size-1 {backend} all-reduce failed: {reduce.get('error')} (environment part)"
    return None
