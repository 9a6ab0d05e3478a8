"""When to stop: signals, time budget, non-finite losses; exit codes the launchers read.

A signal reaches one process (or some of them); every rank must stop at the same step
boundary or the others hang in the next collective. So each rank records what it saw
and :meth:`StopController.agreed_reason` all-reduces it (MAX) once per step.

The first stop is final: later signals (the time limit's TERM after a USR1, a second
scancel, Ctrl-C twice) are logged and ignored until the process exits, so they can
neither change why the run stops nor kill a rank that is saving or has saved. Once
training is over the entrypoint ignores the signals outright (:meth:`ignore_until_exit`)
for its teardown; ``restore`` is for callers that keep running afterwards (tests).
"""

from __future__ import annotations

import enum
import logging
import signal
import time

__all__ = ["ExitCode", "StopController", "StopReason"]

log = logging.getLogger(__name__)


class ExitCode(enum.IntEnum):
    """Process exit codes of ``python -m pretrain.train`` (documented in the README)."""

    FINISHED = 0
    """train.train_steps reached; final checkpoint saved."""
    ERROR = 1
    """Unexpected error (traceback in the log)."""
    CONFIG_ERROR = 2
    """Invalid config or data that does not match it; fix and relaunch."""
    NON_FINITE = 3
    """Too many consecutive non-finite losses; see the log for the last good checkpoint."""
    IO_ERROR = 74
    """A checkpoint could not be read at restart for I/O errors after retries; nothing was
    moved or deleted: relaunch when the file system recovers (EX_IOERR; retried)."""
    REQUEUE = 75
    """Stopped early by SIGUSR1/SIGTERM/SIGINT or train.exit_duration_mins after saving a
    checkpoint of new progress; relaunching resumes exactly (EX_TEMPFAIL)."""
    NO_PROGRESS = 76
    """Stopped by a signal before any training step of this run (during set-up): nothing
    new to save. Relaunching resumes from the same checkpoint; a launcher that sees this
    several times in a row must stop relaunching (the signal comes before training can)."""
    HUNG = 77
    """The watchdog found no progress within a section's timeout (a stuck collective or
    filesystem, a stopped rank); the log names the section and the lagging ranks."""
    REFUSED = 78
    """An input would run code or reach outside its directory (a checkpoint file naming a
    global outside the allowlist, a shard-list or ``meta.json`` path leaving its
    directory); never retried (docs/trust.md)."""


class StopReason(enum.IntEnum):
    """Why a run stops before train_steps; larger values win the cross-rank agreement."""

    NONE = 0
    TIME_BUDGET = 1
    SIGNAL = 2


class StopController:
    """Records SIGUSR1/SIGTERM/SIGINT and the time budget; agrees on stopping across ranks.

    Create it first thing in the process: a signal that arrives during imports, model
    building or checkpoint loading is then recorded instead of killing the rank, and the
    time budget counts from process start, as the scheduler's limit does.
    """

    # SIGINT: Ctrl-C of an interactive torchrun reaches every worker; save like TERM.
    SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)

    def __init__(self, exit_duration_mins: float = 0.0) -> None:
        self._start = time.monotonic()
        self._budget_s = exit_duration_mins * 60.0
        self._signal: int | None = None
        self._local = StopReason.NONE  # the first local reason; never changes once set
        self._agreed = StopReason.NONE  # the first agreed reason; never changes once set
        self._previous = {}
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def set_time_budget(self, exit_duration_mins: float) -> None:
        """Stop after this many minutes since this controller was created (0: never)."""
        self._budget_s = exit_duration_mins * 60.0

    def _on_signal(self, signum: int, _frame) -> None:
        # Only record it: the step in flight finishes, then every rank saves together.
        name = signal.Signals(signum).name
        if self.stopping:
            log.warning("received %s while already stopping (%s): ignored", name,
                        self.describe())
            return
        self._signal = signum
        log.warning("received %s: will save and exit after the current step", name)

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self._signal).name if self._signal else None

    @property
    def stopping(self) -> bool:
        """Whether a stop was already recorded here or agreed with the other ranks."""
        return (self._signal is not None or self._local != StopReason.NONE
                or self._agreed != StopReason.NONE)

    def describe(self) -> str:
        """Why this rank stops, in words: its own signal, else the agreed reason."""
        if self.signal_name:
            return self.signal_name
        reason = self._local if self._local != StopReason.NONE else self._agreed
        return {StopReason.SIGNAL: "a signal to another rank",
                StopReason.TIME_BUDGET: "time budget"}.get(reason, "not stopping")

    def local_reason(self) -> StopReason:
        """Why this rank would stop; the first reason seen sticks."""
        if self._local == StopReason.NONE:
            if self._signal is not None:
                self._local = StopReason.SIGNAL
            elif self._budget_s > 0 and time.monotonic() - self._start >= self._budget_s:
                self._local = StopReason.TIME_BUDGET
        return self._local

    def agreed_reason(self) -> StopReason:
        """The strongest reason any rank has (a collective: call on every rank).

        Once the ranks agreed on a stop, every later call returns it without another
        collective; every rank skips the all-reduce alike, since they agreed alike.
        """
        if self._agreed != StopReason.NONE:
            return self._agreed
        import torch  # not at module level: the handler is installed before heavy imports
        import torch.distributed as dist

        flag = torch.tensor([int(self.local_reason())], dtype=torch.int64)
        if dist.is_initialized() and dist.get_world_size() > 1:
            if dist.get_backend() == "nccl":
                flag = flag.cuda()
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self._agreed = StopReason(int(flag.item()))
        return self._agreed

    def ignore_until_exit(self) -> None:
        """Ignore USR1/TERM/INT from now on (the entrypoint's teardown after training).

        SIG_IGN rather than the recording handler: the interpreter puts back the default
        action of every signal with a Python handler late in its shutdown, and a signal
        then would still kill a rank that has saved; an ignored signal stays ignored.
        """
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        """Put back the signal handlers that were installed before (in-process callers
        that go on running; ``pretrain.train`` keeps its handlers until exit)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
