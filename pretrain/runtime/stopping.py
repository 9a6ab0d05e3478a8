"""When to stop: signals, time budget, non-finite losses; exit codes the launchers read.

A signal reaches one process (or some of them); every rank must stop at the same step
boundary or the others hang in the next collective. So each rank records what it saw
and :meth:`StopController.agreed_reason` all-reduces it (MAX) once per step.
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
        self._previous = {}
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def set_time_budget(self, exit_duration_mins: float) -> None:
        """Stop after this many minutes since this controller was created (0: never)."""
        self._budget_s = exit_duration_mins * 60.0

    def _on_signal(self, signum: int, _frame) -> None:
        # Only record it: the step in flight finishes, then every rank saves together.
        self._signal = signum
        log.warning("received %s: will save and exit after the current step",
                    signal.Signals(signum).name)

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self._signal).name if self._signal else None

    def local_reason(self) -> StopReason:
        if self._signal is not None:
            return StopReason.SIGNAL
        if self._budget_s > 0 and time.monotonic() - self._start >= self._budget_s:
            return StopReason.TIME_BUDGET
        return StopReason.NONE

    def agreed_reason(self) -> StopReason:
        """The strongest reason any rank has (a collective: call on every rank)."""
        import torch  # not at module level: the handler is installed before heavy imports
        import torch.distributed as dist

        flag = torch.tensor([int(self.local_reason())], dtype=torch.int64)
        if dist.is_initialized() and dist.get_world_size() > 1:
            if dist.get_backend() == "nccl":
                flag = flag.cuda()
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return StopReason(int(flag.item()))

    def restore(self) -> None:
        """Put back the signal handlers that were installed before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
