"""Hang detection: every rank times its sections (set-up, step, save, eval) and leaves
heartbeats, so a stuck collective or filesystem, or a stopped rank, ends the run with a
message instead of idling until the job's time limit.

Each rank runs a :class:`Watchdog`: the training loop enters named sections
(``with watchdog.section("step", step=12): ...``); a daemon thread checks once a second
whether the current section has outlived its timeout. Every section entry also writes the
rank's heartbeat (section, step, time) to ``<save_dir>/.heartbeats/rank<R>.json``
(at most once a second per rank), so when a rank times out it can name the ranks that
stopped reporting: a SIGSTOPped or wedged rank cannot report anything itself, but its
peers, blocked in the next collective with it, time out and name it.

On a timeout the thread logs one line (section, seconds, timeout, lagging ranks) and ends
the process with :attr:`pretrain.runtime.stopping.ExitCode.HUNG`. Under srun the other ranks are
then ended by ``--wait`` (slurm/launch_pretrain.sh), and the launcher's retry rule
decides whether to restart from the newest checkpoint.

Why not nvidia-resiliency-ext (the anchor; checked 2026-11-29): version 0.4.1 installs
here (cp311 wheel, plus defusedxml and nvidia-ml-py) and its ``fault_tolerance`` imports
on CPU, but its ``RankMonitorClient`` talks to a per-rank monitor server process whose
socket its own ``ft_launcher`` (a torchrun derivative) creates. Under srun or mpiexec we
would have to start and supervise those servers ourselves, another launcher layer in the
path of every signal. What is needed here -- section timeouts and naming the stuck rank --
is this module, the same under srun, torchrun and mpiexec.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Watchdog"]

log = logging.getLogger(__name__)

#: Seconds between heartbeat writes of one rank (a new section is always written).
_HEARTBEAT_EVERY_S = 1.0


class Watchdog:
    """Section timeouts and heartbeats of one rank.

    Args:
        timeouts: seconds per section name (``setup``, ``step``, ``save``, ``eval``);
            a section without an entry, or with 0, is not timed.
        heartbeat_dir: shared directory for ``rank<R>.json`` heartbeats (``None``: none,
            then a timeout cannot name other ranks).
        rank: this process's global rank.
        on_timeout: called with the message instead of ending the process (tests).
    """

    def __init__(self, timeouts: dict[str, float], heartbeat_dir: str | Path | None, rank: int,
                 on_timeout=None) -> None:
        self.timeouts = {k: float(v) for k, v in timeouts.items() if v}
        self.dir = Path(heartbeat_dir) if heartbeat_dir else None
        self.rank = rank
        self._on_timeout = on_timeout or _exit_hung
        self._section: str | None = None
        self._step = 0
        self._entered = time.monotonic()
        self._last_write = 0.0
        self._written_section: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> Watchdog:
        """Start the checking thread (a daemon: it never keeps the process alive)."""
        if self._thread is None and self.timeouts:
            self._thread = threading.Thread(target=self._run, name="lev-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @contextlib.contextmanager
    def section(self, name: str, step: int | None = None) -> Iterator[None]:
        """Time the enclosed code as section ``name`` (nested sections are not tracked)."""
        previous = self._section
        self.enter(name, step)
        try:
            yield
        finally:
            self._section = previous
            self._entered = time.monotonic()

    def enter(self, name: str, step: int | None = None) -> None:
        """Start (or restart the clock of) section ``name``."""
        self._section = name
        if step is not None:
            self._step = step
        self._entered = time.monotonic()
        self._heartbeat()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if self.dir is None or (self._section == self._written_section
                                and now - self._last_write < _HEARTBEAT_EVERY_S):
            return
        self._last_write, self._written_section = now, self._section
        path = self.dir / f"rank{self.rank}.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"rank": self.rank, "section": self._section,
                                       "step": self._step, "time": time.time(),
                                       "host": os.uname().nodename, "pid": os.getpid()}))
            os.replace(tmp, path)
        except OSError as exc:  # a heartbeat must never fail the run
            log.debug("heartbeat not written: %s", exc)

    def lagging_ranks(self) -> list[dict]:
        """Heartbeats of the other ranks that are behind this one or silent the longest."""
        if self.dir is None:
            return []
        beats = []
        for path in self.dir.glob("rank*.json"):
            with contextlib.suppress(OSError, ValueError):
                beats.append(json.loads(path.read_text()))
        others = [b for b in beats if b.get("rank") != self.rank]
        if not others:
            return []
        behind = [b for b in others if b.get("step", 0) < self._step]
        if behind:
            return sorted(behind, key=lambda b: b["rank"])
        oldest = min(b.get("time", 0.0) for b in others)
        return sorted((b for b in others if b.get("time", 0.0) <= oldest + 1.0),
                      key=lambda b: b["rank"])

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            section = self._section
            limit = self.timeouts.get(section or "")
            if not limit:
                continue
            waited = time.monotonic() - self._entered
            if waited <= limit:
                continue
            now = time.time()
            lagging = ", ".join(
                f"rank {b['rank']} on {b.get('host', '?')} (pid {b.get('pid', '?')}) last seen "
                f"{now - b.get('time', now):.0f} s ago in '{b.get('section')}' at step "
                f"{b.get('step')}" for b in self.lagging_ranks()) or "none recorded"
            self._on_timeout(
                f"watchdog: rank {self.rank} made no progress in section '{section}' (step "
                f"{self._step}) for {waited:.0f} s (timeout {limit:.0f} s, "
                f"watchdog.{section}_timeout_s); lagging ranks: {lagging}")
            return


def _exit_hung(message: str) -> None:
    from pretrain.runtime.stopping import ExitCode

    log.error("%s", message)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(int(ExitCode.HUNG))  # the main thread is stuck: no clean shutdown is possible
