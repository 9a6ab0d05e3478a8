"""The watchdog does not depend on the file system it guards.

A stalled Lustre/NFS blocks every write and read in save_dir. Here a FIFO stands in for
a blocked read (opening it blocks until the other end is opened, as a request to a stalled
server does) and ``LEV_FAULT_DELAY_S=heartbeat:S`` for a blocked heartbeat write (its
temporary file has a fresh name, so no FIFO can be planted in its way). The exit is armed before any I/O of the timeout path, heartbeats are
written by their own thread, and the step timeout follows the measured step time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, cpu_env, rank_logs, spawn_ranks, wait_ranks
from tests.pretrain.train_helpers import run_training, train_argv, train_records

multiproc = pytest.mark.multiproc

GRACE_S = 5.0  # pretrain.runtime.watchdog.EXIT_GRACE_S


#: Every heartbeat write blocks for 10 minutes (with a FIFO from _stall_heartbeat_reads).
STALLED_WRITES = "heartbeat:600"


def _stall_heartbeat_reads(save_dir: Path) -> None:
    """Reading the other ranks' heartbeats in ``save_dir`` blocks, as on a stalled mount."""
    beats = save_dir / ".heartbeats"
    beats.mkdir(parents=True)
    os.mkfifo(beats / "rank7.json")


_ONE_RANK = """
import sys, time
from pretrain.runtime.watchdog import Watchdog
dog = Watchdog({"step": 1.0}, sys.argv[1], rank=0).start()
dog.enter("step", step=3)
time.sleep(600)  # the training thread hangs
"""


def test_a_timeout_whose_heartbeat_reads_block_still_exits_77_within_the_grace(tmp_path):
    _stall_heartbeat_reads(tmp_path)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _ONE_RANK, str(tmp_path / ".heartbeats")],
                          cwd=REPO, env={**cpu_env(), "LEV_FAULT_DELAY_S": STALLED_WRITES},
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 77, done.stderr
    assert elapsed < 1.0 + 1.0 + GRACE_S + 3, f"exited after {elapsed:.1f} s"
    assert "made no progress in section 'step' (step 3)" in done.stderr
    assert "lagging ranks: unknown (the heartbeats in" in done.stderr
    assert "is its file system stalled?" in done.stderr


def wait_for_step(save_dir, log_dir, step: int, timeout: float = 240) -> None:
    """Until ``step`` is in metrics.jsonl (fail with the rank logs after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not ((save_dir / "metrics.jsonl").exists() and step in train_records(save_dir)):
        assert time.monotonic() < deadline, rank_logs(log_dir)
        time.sleep(0.02)


@multiproc
def test_heartbeat_writes_that_block_do_not_stall_training(shard_dir, tmp_path):
    # Training must not wait for any heartbeat write.
    save_dir = tmp_path / "run"
    _stall_heartbeat_reads(save_dir)
    run_training(2, save_dir, shard_dir, "train.train_steps=4", "checkpoint.save_interval=2",
                 timeout=240, env={"LEV_FAULT_DELAY_S": STALLED_WRITES})
    assert sorted(train_records(save_dir)) == [1, 2, 3, 4]


@multiproc
def test_a_save_dir_whose_writes_block_ends_every_rank_with_77_within_the_save_timeout(
        shard_dir, tmp_path):
    save_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    _stall_heartbeat_reads(save_dir)
    argv = train_argv(save_dir, shard_dir, "train.train_steps=50", "checkpoint.save_interval=2",
                      "watchdog.save_timeout_s=5")
    # The first save never ends, as on a stalled mount, and neither does any heartbeat write.
    procs = spawn_ranks(2, argv, log_dir=log_dir,
                        env={"LEV_FAULT_DELAY_S": f"save:120,{STALLED_WRITES}"})
    try:
        wait_for_step(save_dir, log_dir, 2)
        saving = time.monotonic()  # step 2 is logged right before its save starts
        codes = wait_ranks(procs, log_dir, timeout=60)
        elapsed = time.monotonic() - saving
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert codes == [77, 77], rank_logs(log_dir)
    assert elapsed < 5 + 1 + GRACE_S + 5, f"ranks ended {elapsed:.1f} s after the save began"
    first = (log_dir / "rank0.log").read_text()
    assert "made no progress in section 'save' (step 2)" in first
    assert "watchdog.save_timeout_s" in first


@multiproc
def test_a_hang_after_fast_steps_is_caught_after_the_floor_not_the_fixed_step_timeout(
        shard_dir, tmp_path):
    save_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    argv = train_argv(save_dir, shard_dir, "train.train_steps=100000",
                      "checkpoint.save_interval=0", "watchdog.step_timeout_s=600",
                      "watchdog.step_timeout_multiple=5", "watchdog.step_timeout_floor_s=10")
    procs = spawn_ranks(2, argv, log_dir=log_dir)
    try:
        wait_for_step(save_dir, log_dir, 8)
        os.kill(procs[1].pid, signal.SIGSTOP)  # a wedged rank: rank 0 waits in a collective
        stopped = time.monotonic()
        code = procs[0].wait(timeout=120)
        elapsed = time.monotonic() - stopped
    finally:
        for p in procs:
            p.kill()  # rank 1 is stopped: SIGKILL still ends it
            p.wait()
    log = (log_dir / "rank0.log").read_text()
    assert code == 77, log[-4000:]
    assert "watchdog: step timeout" in log and "from 5 measured steps" in log
    assert "made no progress in section 'step'" in log and "lagging ranks: rank 1" in log
    assert elapsed < 60, f"the hang was caught after {elapsed:.0f} s (fixed timeout: 600 s)"
