"""Which signals make a rank save and stop (pretrain/runtime/stopping.py), and its exit codes."""

from __future__ import annotations

import os
import signal

import pytest

from pretrain.runtime.stopping import ExitCode, StopController, StopReason


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM, signal.SIGINT])
def test_usr1_term_and_ctrl_c_are_recorded_not_fatal(sig):
    stopper = StopController()
    try:
        os.kill(os.getpid(), sig)  # delivered before os.kill returns (same thread)
        assert stopper.local_reason() == StopReason.SIGNAL
        assert stopper.signal_name == sig.name
    finally:
        stopper.restore()
    assert signal.getsignal(sig) is not stopper._on_signal  # the previous handler is back


def test_exit_codes_distinguish_saved_progress_from_no_step_and_hangs():
    assert (ExitCode.REQUEUE, ExitCode.NO_PROGRESS, ExitCode.HUNG) == (75, 76, 77)
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
