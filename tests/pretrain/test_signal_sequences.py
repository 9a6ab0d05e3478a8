"""Signal sequences: the first stop reason is final, later signals are ignored until exit.
Real 2-rank runs of `python -m pretrain.train` on gloo; the signals
are real (os.kill), sent while a rank is saving, evaluating or tearing down.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pretrain.runtime.stopping import StopController, StopReason
from tests.conftest import rank_logs, spawn_ranks, wait_ranks
from tests.pretrain.train_helpers import train_argv, train_records

multiproc = pytest.mark.multiproc


def _wait_for(condition, what: str, log_dir: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{rank_logs(log_dir)}")
        time.sleep(0.02)


def _logged(log_dir: Path, text: str, ranks=(0, 1)) -> bool:
    return all(text in (log_dir / f"rank{r}.log").read_text() for r in ranks)


def _trained_step(save_dir: Path, step: int) -> bool:
    return (save_dir / "metrics.jsonl").exists() and step in train_records(save_dir)


@pytest.fixture
def start(shard_dir, tmp_path):
    """``start(*overrides, env=...)`` -> (rank processes, save_dir, log_dir) of a 200-step
    run; ranks still running when the test ends are killed."""
    launched = []

    def run(*overrides: str, env: dict[str, str] | None = None):
        save_dir, log_dir = tmp_path / "run", tmp_path / "logs"
        argv = train_argv(save_dir, shard_dir, "train.zero_stage=1", "train.train_steps=200",
                          *overrides)
        launched.extend(spawn_ranks(2, argv, env=env, log_dir=log_dir))
        return launched[-2:], save_dir, log_dir

    yield run
    for p in launched:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_the_first_signal_is_the_reason_and_later_ones_are_ignored():
    stopper = StopController()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # the time limit's TERM after USR1
        assert stopper.signal_name == "SIGUSR1"
        assert stopper.local_reason() == StopReason.SIGNAL
        assert stopper.agreed_reason() == StopReason.SIGNAL
    finally:
        stopper.restore()


def test_a_time_budget_stop_is_not_turned_into_a_signal_stop_by_a_later_signal():
    stopper = StopController(exit_duration_mins=1e-9)
    try:
        assert stopper.agreed_reason() == StopReason.TIME_BUDGET
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.signal_name is None
        assert stopper.agreed_reason() == StopReason.TIME_BUDGET
    finally:
        stopper.restore()


@multiproc
def test_usr1_then_term_during_a_slow_save_is_one_stop_for_usr1_with_exit_75(start):
    procs, save_dir, log_dir = start("checkpoint.save_interval=0",
                                     env={"LEV_FAULT_DELAY_S": "save:4"})
    _wait_for(lambda: _trained_step(save_dir, 1), "step 1", log_dir)
    os.kill(procs[1].pid, signal.SIGUSR1)
    _wait_for(lambda: _logged(log_dir, "fault injection: save delayed"), "the save", log_dir)
    for p in procs:  # the job-wide TERM of the time limit, in the middle of the save
        p.send_signal(signal.SIGTERM)
    assert wait_ranks(procs, log_dir) == [75, 75], rank_logs(log_dir)
    first, second = ((log_dir / f"rank{r}.log").read_text() for r in range(2))
    assert "received SIGTERM while already stopping (a signal to another rank): ignored" in first
    assert "received SIGTERM while already stopping (SIGUSR1): ignored" in second
    assert "(SIGUSR1); saving" in second
    assert first.count("saved ") == 1
    stopped_at = (save_dir / "latest").read_text().strip()
    assert (save_dir / stopped_at / "meta.json").is_file()


@multiproc
def test_signals_after_the_save_never_kill_a_rank_that_saved(start):
    procs, save_dir, log_dir = start("checkpoint.save_interval=0")
    _wait_for(lambda: _trained_step(save_dir, 1), "step 1", log_dir)
    os.kill(procs[1].pid, signal.SIGUSR1)
    _wait_for(lambda: _logged(log_dir, "saved ", ranks=(0,)), "the save", log_dir)
    # A second scancel, the time limit's TERM, Ctrl-C: over and over until both ranks exit.
    repeat = [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT]
    deadline, sent = time.monotonic() + 120, 0
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        for p in procs:
            if p.poll() is None:
                p.send_signal(repeat[sent % len(repeat)])
        sent += 1
        time.sleep(0.01)
    assert wait_ranks(procs, log_dir, timeout=10) == [75, 75], rank_logs(log_dir)
    assert sent > 3, "the ranks exited before the signals could test anything"


@multiproc
@pytest.mark.parametrize("section", ["save", "eval"])
def test_usr1_during_a_save_or_evaluation_stops_with_that_save_only(start, section):
    procs, save_dir, log_dir = start("checkpoint.save_interval=2", "train.eval_interval=2",
                                     "train.eval_samples=8",
                                     env={"LEV_FAULT_DELAY_S": f"{section}:4"})
    _wait_for(lambda: _trained_step(save_dir, 2), "step 2", log_dir)
    _wait_for(lambda: _logged(log_dir, f"fault injection: {section} delayed"), section, log_dir)
    os.kill(procs[1].pid, signal.SIGUSR1)
    assert wait_ranks(procs, log_dir) == [75, 75], rank_logs(log_dir)
    # Stopped at step 2 with its periodic save: no step 3, no second save.
    assert sorted(p.name for p in save_dir.glob("step*")) == ["step00000002"]
    assert max(train_records(save_dir)) == 2
    assert "stopping at step 2 (SIGUSR1); already saved" in (log_dir / "rank1.log").read_text()
