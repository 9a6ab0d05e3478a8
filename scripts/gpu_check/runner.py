"""The orchestrator's plumbing: one deadline, each part's time, child processes, the JSON.

Every part runs its workers as child processes in their own session, so a hang, a crash or
an out-of-memory in one part is killed on time and leaves the others their turn. The
summary JSON is rewritten as each part ends: a run killed from outside still leaves the
parts done so far.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .plan import BUDGET_S, PART_LIMITS_S, PARTS, REPO

__all__ = ["Limit", "PartFailed", "Runner", "merged_json"]

Limit = Callable[[], float]
"""``limit()``: seconds the running part may still use."""


class PartFailed(Exception):
    """A part cannot go on; the message is its reason."""


def merged_json(output: str) -> dict[str, Any]:
    """Every JSON-object line of a worker's output merged in order (later keys win).

    Workers print what they learn as they go, so a worker killed at its limit still
    reports how far it got.
    """
    merged: dict[str, Any] = {}
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue  # a library's own log line that happens to start with "{"
            if isinstance(value, dict):
                merged.update(value)
    return merged


class Runner:
    """The parts in order under one deadline; the JSON is rewritten as each part ends."""

    def __init__(self, out: Path, work: Path, dry_run: bool) -> None:
        self.out, self.work, self.dry_run = out, work, dry_run
        self.t0 = float(os.environ.get("GPU_CHECK_T0") or time.time())
        self.deadline = self.t0 + BUDGET_S - 5  # the last seconds write the summary
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        self._log = (out / "gpu_check.log").open("a", buffering=1)
        self._lock = threading.Lock()
        self.parts: dict[str, dict[str, Any]] = {}
        self.summary: dict[str, Any] = {"dry_run": dry_run, "budget_s": BUDGET_S,
                                        "work_dir": str(work), "parts": self.parts}

    def say(self, line: str) -> None:
        """Print ``line`` and append it to the log."""
        with self._lock:
            print(line, flush=True)
            self._log.write(line + "\n")

    def allowance(self, part: str, started: float) -> float:
        """Seconds ``part`` may still use: its cap, less what every later part needs."""
        later = [p for p in PARTS[PARTS.index(part) + 1:] if p in PART_LIMITS_S]
        reserve = sum(PART_LIMITS_S[p][1] for p in later)
        return min(PART_LIMITS_S[part][0] - (time.time() - started),
                   self.deadline - time.time() - reserve)

    def record(self, part: str, status: str, **fields: Any) -> None:
        """Store ``part``'s outcome (``pass`` / ``fail`` / ``skipped``) and rewrite the JSON."""
        self.parts[part] = {"status": status, **fields}
        self.write_summary()
        reason = f": {fields['reason']}" if "reason" in fields else ""
        self.say(f"== {part}: {status}{reason}")

    def write_summary(self) -> None:
        """(Re)write OUT/gpu_check.json."""
        self.summary["wall_s"] = round(time.time() - self.t0, 1)
        self.summary["ok"] = len(self.parts) == len(PARTS) and all(
            entry["status"] == "pass" or (part == "install" and self.dry_run)
            for part, entry in self.parts.items())  # the dry run skips the install by design
        (self.out / "gpu_check.json").write_text(json.dumps(self.summary, indent=1) + "\n")

    def run_part(self, part: str, body: Callable[[Limit], tuple[str, dict]]) -> None:
        """Run ``body(limit)`` within ``part``'s allowance and record what it returns."""
        started = time.time()
        if (left := self.allowance(part, started)) < PART_LIMITS_S[part][1]:
            self.record(part, "skipped", reason=(
                f"out of time: {max(left, 0):.0f} s left for it within the {BUDGET_S:.0f} s "
                f"budget after the later parts' minimums; it needs {PART_LIMITS_S[part][1]} s"))
            return
        self.say(f"== {part} (up to {left:.0f} s)")
        try:
            status, fields = body(lambda: self.allowance(part, started))
        except PartFailed as exc:
            status, fields = "fail", {"reason": str(exc)}
        except Exception as exc:  # a bug here must not stop the other parts
            status, fields = "fail", {"reason": f"{type(exc).__name__}: {exc}",
                                      "traceback": traceback.format_exc()[-3000:]}
        self.record(part, status, **fields, wall_s=round(time.time() - started, 1))

    def command(self, part: str, argv: list, limit: float,
                env: dict[str, str] | None = None) -> tuple[int | None, str]:
        """Run ``argv`` in the repo, its output streamed into the log.

        Returns its exit code (``None`` if it was killed at ``limit`` seconds, its whole
        process group) and its output.
        """
        if limit < 5:
            raise PartFailed(f"out of time before: {shlex.join(map(str, argv))}")
        child_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        if self.dry_run:
            child_env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU path, GPU or not
        self.say(f"[{part}] $ {shlex.join(map(str, argv))}   (limit {limit:.0f} s)")
        proc = subprocess.Popen([str(a) for a in argv], cwd=REPO, env=child_env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                errors="replace", start_new_session=True)
        lines: list[str] = []

        def pump() -> None:
            for line in proc.stdout:
                lines.append(line)
                self.say(f"[{part}] {line.rstrip()}")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            code = None
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: it and what it started
            proc.wait()
            self.say(f"[{part}] killed at its limit of {limit:.0f} s")
        reader.join(timeout=10)
        return code, "".join(lines)

    def python(self, part: str, args: list, limit: float, **kw: Any) -> str:
        """``command`` of ``python ARGS`` that must exit 0; returns its output."""
        code, output = self.command(part, [sys.executable, *args], limit, **kw)
        if code != 0:
            what = "killed at its time limit" if code is None else f"exited {code}"
            name = ("pretrain.train (deterministic flags)" if args[0] == "-c" else
                    " ".join(Path(str(a)).name for a in args[:2]))
            last = (output.strip().splitlines() or ["no output"])[-1]
            raise PartFailed(f"{name} {what}; its last line: {last}")
        return output
