"""One writer per save_dir: a lease with the job id and host.

Two live jobs on one save_dir would delete or set aside each other's checkpoints; the
second is refused by name. A lease left by a job that died is taken over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest

from pretrain.checkpoint.lease import LEASE, SaveDirInUseError, SaveDirLease
from tests.conftest import rank_logs, spawn_ranks, wait_ranks
from tests.pretrain.train_helpers import run_training, train_argv, train_records

multiproc = pytest.mark.multiproc


def _lease_file(save_dir, job: str, host: str, pid: int, renewed: float) -> None:
    save_dir.mkdir(parents=True, exist_ok=True)
    (save_dir / LEASE).write_text(json.dumps({"job": job, "host": host, "pid": pid,
                                              "renewed": renewed}))


def test_a_live_job_elsewhere_keeps_its_lease_and_the_newcomer_is_refused_by_name(tmp_path):
    _lease_file(tmp_path, "slurm job 1001", "node12", 4242, time.time() + 60)
    lease = SaveDirLease(tmp_path, timeout_s=1.5, job="slurm job 1002")
    started = time.monotonic()
    with pytest.raises(SaveDirInUseError, match=r"is in use by slurm job 1001 \(rank 0 is pid "
                                                r"4242 on node12; .*checkpoint.lease_timeout_s"):
        lease.acquire()
    assert time.monotonic() - started >= 1.5  # it waited for the lease to go stale


def test_a_lease_not_renewed_within_the_timeout_is_taken_over(tmp_path):
    _lease_file(tmp_path, "slurm job 1001", "node12", 4242, time.time() - 120)
    lease = SaveDirLease(tmp_path, timeout_s=60, job="slurm job 1002")
    lease.acquire()
    assert json.loads((tmp_path / LEASE).read_text())["job"] == "slurm job 1002"
    lease.release()
    assert not (tmp_path / LEASE).exists()


def test_a_requeued_job_takes_back_its_own_lease_at_once(tmp_path):
    _lease_file(tmp_path, "slurm job 1001", socket.gethostname(), os.getpid(), time.time())
    lease = SaveDirLease(tmp_path, timeout_s=60, job="slurm job 1001")
    lease.acquire()
    lease.release()


@multiproc
def test_a_second_live_job_on_one_save_dir_is_refused_by_name(shard_dir, tmp_path):
    save_dir, log_a = tmp_path / "run", tmp_path / "a-logs"
    first = spawn_ranks(2, train_argv(save_dir, shard_dir, "train.train_steps=100000",
                                      "checkpoint.save_interval=20"),
                        env={"SLURM_JOB_ID": "1001"}, log_dir=log_a)
    try:
        deadline = time.monotonic() + 240
        while not ((save_dir / "step00000020" / "meta.json").is_file()):
            assert time.monotonic() < deadline, rank_logs(log_a)
            time.sleep(0.05)
        second = tmp_path / "b-logs"
        codes = wait_ranks(spawn_ranks(2, train_argv(save_dir, shard_dir, "train.train_steps=500"),
                                       env={"SLURM_JOB_ID": "1002"}, log_dir=second),
                           second, timeout=240)
        assert codes == [2, 2], rank_logs(second)
        refusal = (second / "rank0.log").read_text()
        assert f"checkpoint.save_dir={save_dir} is in use by slurm job 1001 (rank 0 is pid " \
               f"{first[0].pid} on {socket.gethostname()}" in refusal
        assert all(p.poll() is None for p in first), "the first job was disturbed"
        os.kill(first[0].pid, signal.SIGUSR1)
        assert wait_ranks(first, log_a) == [75, 75], rank_logs(log_a)
    finally:
        for p in first:
            p.kill()
            p.wait()
    assert not (save_dir / LEASE).exists()  # released at exit
    assert not (save_dir / "abandoned").exists()
    stopped_at = int((save_dir / "latest").read_text().strip()[4:])
    assert sorted(train_records(save_dir)) == list(range(1, stopped_at + 1))


@multiproc
def test_a_lease_left_by_a_killed_job_is_taken_over_by_the_next(shard_dir, tmp_path):
    save_dir, log_a = tmp_path / "run", tmp_path / "a-logs"
    first = spawn_ranks(2, train_argv(save_dir, shard_dir, "train.train_steps=100000"),
                        env={"SLURM_JOB_ID": "1001"}, log_dir=log_a)
    try:
        deadline = time.monotonic() + 240
        while not ((save_dir / "metrics.jsonl").exists() and train_records(save_dir)):
            assert time.monotonic() < deadline, rank_logs(log_a)
            time.sleep(0.05)
    finally:
        for p in first:  # a node failure: no clean exit, the lease stays behind
            p.kill()
            p.wait()
    assert json.loads((save_dir / LEASE).read_text())["job"] == "slurm job 1001"
    run_training(2, save_dir, shard_dir, "train.train_steps=2", "checkpoint.resume=auto",
                 env={"SLURM_JOB_ID": "1002"})
    log = (tmp_path / "run-logs" / "rank0.log").read_text()
    assert f"taking over the lease of {save_dir} from slurm job 1001: its process " \
           f"{first[0].pid} on {socket.gethostname()} is gone" in log
