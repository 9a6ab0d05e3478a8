"""Hang detection: every rank times its sections (set-up, step, save, eval) and leaves
heartbeats, so a stuck collective or filesystem, or a stopped rank, ends the run with a
message instead of idling until the job's time limit.

Each rank runs a :class:`Watchdog`: the training loop enters named sections
(``with watchdog.section("step", step=12): ...``); a daemon thread checks once a second
whether the current section has outlived its timeout. Every section entry also updates
the rank's heartbeat (section, step, time), which a second daemon thread writes to
``<save_dir>/.heartbeats/rank<R>.json`` (at most once a second per rank), so when a rank
times out it can name the ranks that stopped reporting: a SIGSTOPped or wedged rank
cannot report anything itself, but its peers, blocked in the next collective with it,
time out and name it.

The watchdog must not depend on the file system it guards (a stalled Lustre/NFS is one
of the hangs it exists for): entering a section does no I/O (the heartbeat writer
thread does it, and may block alone), the checking thread does none until a timeout,
and a timeout first arms a timer that ends the process ``exit_grace_s`` later whatever
the reading of heartbeats and the logging then do.

The step timeout follows the measured step time (:class:`StepTimeout`): after a few
steps it becomes ``multiple x`` the slowest step seen, never below a floor, as
nvidia-resiliency-ext derives its timeouts (``safety_factor`` x the observed interval),
so a hang at 0.3 s/step is caught in about a minute rather than the fixed 180 s.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pretrain.runtime.faults import fault_delay_s
from pretrain.runtime.files import write_atomic
from pretrain.runtime.launcher import node_name

__all__ = ["StepTimeout", "Watchdog"]

log = logging.getLogger(__name__)

#: Least seconds between two heartbeat writes of one rank (the latest state is written).
_HEARTBEAT_EVERY_S = 1.0
#: Seconds from a timeout to the process's end, whatever I/O is stuck by then.
EXIT_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class StepTimeout:
    """The step timeout derived from measured step times.

    After ``after_steps`` timed steps the timeout is ``multiple x the slowest step so
    far``, at least ``floor_s`` and at most the fixed step timeout (which stays the
    ceiling: deriving only tightens it); before that, and with ``multiple=0``, the fixed
    one.
    """

    multiple: float
    floor_s: float
    after_steps: int = 5  # nvidia-resiliency-ext's num_warmup_iterations

    def derive(self, slowest_s: float, steps: int, ceiling_s: float) -> float | None:
        """The derived timeout, or ``None`` while too few steps were measured."""
        if self.multiple <= 0 or steps < self.after_steps:
            return None
        return min(ceiling_s, max(self.floor_s, self.multiple * slowest_s))


class Watchdog:
    """Section timeouts and heartbeats of one rank.

    Args:
        timeouts: seconds per section name (``setup``, ``step``, ``save``, ``eval``);
            a section without an entry, or with 0, is not timed.
        heartbeat_dir: shared directory for ``rank<R>.json`` heartbeats (``None``: none,
            then a timeout cannot name other ranks).
        rank: this process's global rank.
        on_timeout: called with the message instead of ending the process (tests); no
            exit is armed then.
        step_timeout: derives the ``step`` timeout from measured steps (``None``: fixed).
        exit_grace_s: seconds from a timeout to ``os._exit`` at the latest.
    """

    def __init__(self, timeouts: dict[str, float], heartbeat_dir: str | Path | None, rank: int,
                 on_timeout: Callable[[str], None] | None = None, *,
                 step_timeout: StepTimeout | None = None,
                 exit_grace_s: float = EXIT_GRACE_S) -> None:
        self.timeouts = {k: float(v) for k, v in timeouts.items() if v}
        self.dir = Path(heartbeat_dir) if heartbeat_dir else None
        self.rank = rank
        self._arm_exit = on_timeout is None
        self._on_timeout = on_timeout or _exit_hung
        self._step_rule = step_timeout
        self._exit_grace_s = exit_grace_s
        self._section: str | None = None
        self._step = 0
        self._entered = time.monotonic()
        self._entered_at = time.time()  # the heartbeat's time: when the section began
        self._slowest_step_s = 0.0
        self._steps_timed = 0
        self._derived_step_timeout: float | None = None
        self._beat = threading.Event()  # set when the heartbeat has news to write
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Watchdog:
        """Start the checking and heartbeat threads (daemons: they never keep the process
        alive, and a write stuck in a stalled file system blocks only its own thread)."""
        if self._threads:
            return self
        if self.timeouts:
            self._threads.append(threading.Thread(target=self._run, name="lev-watchdog",
                                                  daemon=True))
        if self.dir is not None:
            self._threads.append(threading.Thread(target=self._write_heartbeats,
                                                  name="lev-heartbeat", daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop both threads; never waits long for a writer stuck in I/O."""
        self._stop.set()
        self._beat.set()
        for thread in self._threads:
            thread.join(timeout=1)  # a writer stuck in I/O is left behind (a daemon)
        self._threads = []

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
        """Start (or restart the clock of) section ``name``. No I/O: never blocks."""
        now = time.monotonic()
        if self._section == "step":
            self._time_step(now - self._entered)
        self._section = name
        if step is not None:
            self._step = step
        self._entered, self._entered_at = now, time.time()
        self._beat.set()

    def timeout_of(self, section: str | None) -> float | None:
        """The timeout now in force for ``section`` (``None``: untimed)."""
        if section == "step" and self._derived_step_timeout is not None:
            return self._derived_step_timeout
        return self.timeouts.get(section or "")

    def _time_step(self, seconds: float) -> None:
        """Account one finished step; derive the step timeout once enough are measured."""
        self._slowest_step_s = max(self._slowest_step_s, seconds)
        self._steps_timed += 1
        if self._step_rule is None or "step" not in self.timeouts:
            return  # no rule, or steps untimed (step_timeout_s=0): nothing to tighten
        derived = self._step_rule.derive(self._slowest_step_s, self._steps_timed,
                                         self.timeouts["step"])
        if derived is not None and self._derived_step_timeout is None:
            log.info("watchdog: step timeout %.0f s from %d measured steps (slowest %.2f s x "
                     "watchdog.step_timeout_multiple=%g, within watchdog.step_timeout_floor_s"
                     "=%g and watchdog.step_timeout_s=%g)", derived, self._steps_timed,
                     self._slowest_step_s, self._step_rule.multiple, self._step_rule.floor_s,
                     self.timeouts.get("step", 0))
        if derived is not None:
            self._derived_step_timeout = derived

    # ------------------------------------------------------------ heartbeats
    def _write_heartbeats(self) -> None:
        """The heartbeat thread: write the latest state when it changed, at most once a
        second; a write that blocks delays only later heartbeats."""
        written: tuple | None = None
        with contextlib.suppress(OSError):
            self.dir.mkdir(parents=True, exist_ok=True)
        while not self._stop.is_set():
            self._beat.wait()
            self._beat.clear()
            if self._stop.is_set():
                return
            state = (self._section, self._step, self._entered_at)
            if state != written:
                self._write_beat(*state)
                written = state
            self._stop.wait(_HEARTBEAT_EVERY_S)

    def _write_beat(self, section: str | None, step: int, entered_at: float) -> None:
        # Tests stand in for a stalled mount here: every write blocks this thread only.
        time.sleep(fault_delay_s("heartbeat"))
        try:
            write_atomic(self.dir / f"rank{self.rank}.json",
                         json.dumps({"rank": self.rank, "section": section, "step": step,
                                     "time": entered_at, "host": node_name(),
                                     "pid": os.getpid()}))
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

    # ------------------------------------------------------------ timeouts
    def _run(self) -> None:
        while not self._stop.wait(1.0):
            section = self._section
            limit = self.timeout_of(section)
            waited = time.monotonic() - self._entered
            if limit and waited > limit:
                self._timed_out(section, waited, limit)
                return

    def _timed_out(self, section: str, waited: float, limit: float) -> None:
        """Arm the exit first, then try to name the lagging ranks and log."""
        if self._arm_exit:
            timer = threading.Timer(self._exit_grace_s, os._exit, args=(_hung_code(),))
            timer.daemon = True
            timer.start()
        self._on_timeout(
            f"watchdog: rank {self.rank} made no progress in section '{section}' (step "
            f"{self._step}) for {waited:.0f} s (timeout {limit:.0f} s, "
            f"{self._timeout_source(section)}); lagging ranks: {self._describe_lagging()}")

    def _timeout_source(self, section: str) -> str:
        if section == "step" and self._derived_step_timeout is not None:
            return (f"{self._step_rule.multiple:g} x the slowest step {self._slowest_step_s:.2f} "
                    f"s within [{self._step_rule.floor_s:g}, "
                    f"{self.timeouts.get('step', 0):g}] s: watchdog.step_timeout_multiple, "
                    f"watchdog.step_timeout_floor_s, watchdog.step_timeout_s")
        return f"watchdog.{section}_timeout_s"

    def _describe_lagging(self) -> str:
        """The lagging ranks in words, or why they are unknown; reading the heartbeats
        may block in a stalled file system, so it gets half the exit grace at most."""
        found: list[list[dict]] = []
        reader = threading.Thread(target=lambda: found.append(self.lagging_ranks()),
                                  name="lev-watchdog-read", daemon=True)
        reader.start()
        reader.join(self._exit_grace_s / 2)
        if not found:
            return (f"unknown (the heartbeats in {self.dir} were not readable within "
                    f"{self._exit_grace_s / 2:.1f} s: is its file system stalled?)")
        now = time.time()
        return ", ".join(
            f"rank {b['rank']} on {b.get('host', '?')} (pid {b.get('pid', '?')}) last seen "
            f"{now - b.get('time', now):.0f} s ago in '{b.get('section')}' at step "
            f"{b.get('step')}" for b in found[0]) or "none recorded"


def _hung_code() -> int:
    from pretrain.runtime.stopping import ExitCode

    return int(ExitCode.HUNG)


def _exit_hung(message: str) -> None:
    log.error("%s", message)  # may block (a log on the stalled file system): the timer ends us
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(_hung_code())  # the main thread is stuck: no clean shutdown is possible
