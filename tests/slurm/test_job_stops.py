"""Every way a cluster stops a training job, on a real local Slurm, through the real sbatch
file (slurm/README.md, "How a job stops"): preemption, cancel, a TERM to the batch shell,
signals during set-up, a rank killed, a rank stopped. Nothing is lost and nothing requeues
forever; where the run continues, its losses equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import LocalSlurm

from tests.pretrain.conftest import shard_dir  # noqa: F401  (session fixture: tiny shards)
from tests.pretrain.train_helpers import train_records
from tests.slurm.test_pretrain_job import STEPS, Job, submit, train_env

pytestmark = [pytest.mark.slurm, pytest.mark.multiproc]


def wait_for(condition, job: Job, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s\n{job.text()[-5000:]}"
        time.sleep(0.05)


def steps_logged(job: Job) -> int:
    return max(train_records(job.save), default=0) if (job.save / "metrics.jsonl").exists() else 0


def saved_step(job: Job) -> int:
    latest = job.save / "latest"
    return int(latest.read_text().strip().removeprefix("step")) if latest.exists() else 0


def rank_pid(job: Job, rank: int) -> int:
    """Pid of training rank ``rank`` of ``job`` (its environment names SAVE_DIR and RANK)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            env = dict(item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0")
                       if b"=" in item)
        except OSError:
            continue
        # srun's own command line names pretrain.train too, and it carries SLURM_PROCID=0.
        if (b"pretrain.train" in cmdline and Path(cmdline[0].decode()).name != "srun"
                and env.get(b"SLURM_PROCID") == str(rank).encode()
                and f"checkpoint.save_dir={job.save}".encode() in cmdline):
            return int(entry.name)
    raise AssertionError(f"rank {rank} of job {job.id} not found\n{job.text()[-3000:]}")


def started(job: Job) -> Job:
    job.slurm.release(job.id)
    return job


def assert_losses_equal_reference(job: Job, reference: Job) -> None:
    state, text = reference.finish()
    assert state == "COMPLETED", text[-4000:]
    ref, got = train_records(reference.save), train_records(job.save)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert got[step]["sample_ids"] == ref[step]["sample_ids"], f"step {step}"
        assert got[step]["loss"] == ref[step]["loss"], f"step {step}"


@pytest.fixture(scope="module")
def jobs(local_slurm: LocalSlurm, shard_dir: Path,  # noqa: F811
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Job]]:
    """The jobs of this file, submitted together but held: each test releases its own
    (:func:`started`), so its event lands mid-run; the reference runs at once."""
    root = tmp_path_factory.mktemp("stop_jobs")

    def job(name: str, *extra: str, env: dict[str, str] | None = None) -> Job:
        hold = () if name == "reference" else ("--hold",)
        return submit(local_slurm, root / name, *hold,
                      env={**train_env(shard_dir, root / name / "run", *extra), **(env or {})})

    periodic = "checkpoint.save_interval=10"
    submitted = {
        "reference": job("reference"),
        "term_batch": job("term_batch"),
        "cancel": job("cancel"),
        # Set-up held open (up to 60 s, until a stop request) at its end: the signal lands
        # in set-up however loaded the machine is.
        "setup_signals": job("setup_signals", env={"MAX_NO_PROGRESS_RESTARTS": "1",
                                                   "LEV_FAULT_DELAY_S": "setup:60"}),
        # srun's --wait (60 s by default) shortened: the test needs the mechanism, not the wait.
        "killed_rank": job("killed_rank", periodic, env={"SRUN_WAIT_S": "20"}),
        "stopped_rank": job("stopped_rank", periodic, "watchdog.step_timeout_s=15",
                            env={"SRUN_WAIT_S": "10"}),
    }
    yield submitted
    local_slurm.cancel_all()


def test_term_to_the_batch_shell_saves_and_ends_the_job_without_requeue(jobs):
    job = started(jobs["term_batch"])
    wait_for(lambda: steps_logged(job) >= 1, job, "a training step")
    job.slurm.signal(job.id, "TERM", batch_only=True)  # scancel --signal=TERM --batch

    state, text = job.finish()
    assert state == "CANCELLED", text[-5000:]
    assert job.slurm.requeue_count(job.id) == 0
    # Forwarded as USR1 (a TERM to srun would become SIGKILL); both ranks saved.
    assert "got SIGTERM: asking every rank to save and stop (USR1" in text
    for rank in (0, 1):
        assert f"[rank {rank}] WARNING pretrain.runtime.stopping: received SIGUSR1" in text
    assert "training exited with code 75" in text and "stopped on request (SIGTERM" in text
    assert 1 <= saved_step(job) < STEPS


def test_plain_scancel_saves_and_the_job_ends_cancelled_without_restart(jobs):
    job = started(jobs["cancel"])
    wait_for(lambda: steps_logged(job) >= 1, job, "a training step")
    subprocess.run(["scancel", str(job.id)], env=job.slurm.env, check=True)

    state, text = job.finish()
    assert state == "CANCELLED", text[-5000:]
    assert job.slurm.requeue_count(job.id) == 0
    # Both ranks got the job-wide TERM and saved before KillWait ran out (the batch shell
    # itself is killed then, so its own closing lines may be missing).
    for rank in (0, 1):
        assert f"[rank {rank}] WARNING pretrain.runtime.stopping: received SIGTERM" in text, text[-5000:]
    assert 1 <= saved_step(job) < STEPS, text[-5000:]


SETUP_HELD = "[rank 0] WARNING pretrain.training.trainer: fault injection: setup delayed"


def test_signals_during_set_up_stop_requeueing_after_the_limit(jobs):
    job = started(jobs["setup_signals"])
    for run in range(2):  # MAX_NO_PROGRESS_RESTARTS=1: one requeue, then the job fails
        # The ranks have built the model and engine and wait at the end of set-up; their
        # handler has long been installed.
        wait_for(lambda run=run: job.text().count(SETUP_HELD) > run, job, f"run {run} in set-up")
        job.slurm.signal(job.id, "USR1", batch_only=True)
        if run == 0:
            wait_for(lambda: job.slurm.requeue_count(job.id) == 1, job, "the first requeue")

    state, text = job.finish()
    assert state == "FAILED", text[-5000:]
    assert job.slurm.requeue_count(job.id) == 1
    assert text.count("training exited with code 76") == 2, text[-5000:]
    assert "no step taken in this run (1 of 1" in text
    assert "2 restarts in a row stopped before a single training step" in text
    assert not (job.save / "latest").exists()  # nothing was trained, nothing saved


def signal_rank_after_a_checkpoint(job: Job, rank: int, sig: signal.Signals) -> float:
    """Send ``sig`` to ``rank`` once step 10 is saved; seconds until srun's step ended."""
    wait_for(lambda: saved_step(job) >= 10 and steps_logged(job) >= 12, job, "a checkpoint")
    os.kill(rank_pid(job, rank), sig)
    sent = time.monotonic()
    wait_for(lambda: "training exited with code" in job.text(), job, "srun ending", 120)
    return time.monotonic() - sent


def test_a_killed_rank_ends_the_step_within_srun_wait_and_the_run_resumes_exactly(jobs):
    job = started(jobs["killed_rank"])
    ended = signal_rank_after_a_checkpoint(job, 1, signal.SIGKILL)
    assert ended < 20 + 15, "the surviving rank outlived srun's --wait=SRUN_WAIT_S"

    state, text = job.finish()
    assert state == "COMPLETED", text[-6000:]
    assert job.slurm.requeue_count(job.id) == 1
    assert "after writing step" in text and "retrying from it" in text, text[-6000:]
    assert_losses_equal_reference(job, jobs["reference"])


def test_a_stopped_rank_is_detected_by_the_watchdog_and_the_run_retries(jobs):
    job = started(jobs["stopped_rank"])
    ended = signal_rank_after_a_checkpoint(job, 1, signal.SIGSTOP)
    assert ended < 15 + 10 + 20  # step timeout + srun wait + slack

    state, text = job.finish()
    assert state == "COMPLETED", text[-6000:]
    assert job.slurm.requeue_count(job.id) == 1
    hang = re.search(r"watchdog: rank 0 made no progress in section '(step|save)'.*", text)
    assert hang and "lagging ranks: rank 1 " in hang.group(0), text[-6000:]
    # Rank 0 exits 77; srun then kills the stopped rank 1, whose 137 becomes srun's code.
    assert "task 0: Exited with exit code 77" in text and "retrying from it" in text
    assert_losses_equal_reference(job, jobs["reference"])


@pytest.fixture(scope="module")
def preempting_slurm(require_slurm, tmp_path_factory) -> Iterator[LocalSlurm]:
    """A cluster of its own with a low (default) and a high partition, high preempting low."""
    with LocalSlurm(tmp_path_factory.mktemp("preempt_slurm"), preemption=True,
                    grace_time=30) as cluster:
        yield cluster


def preempt_and_finish(cluster: LocalSlurm, job: Job, tmp_path: Path) -> str:
    """Submit a job asking for all 8 CPUs of the node in the high partition (Slurm must
    preempt ``job``); wait for both; return ``job``'s log once it COMPLETED after a requeue."""
    high = cluster.sbatch_wrap("sleep 2", "--partition=high", "--ntasks=8",
                               f"--output={tmp_path / 'high.log'}")
    state, text = job.finish()
    assert state == "COMPLETED", text[-6000:]
    assert cluster.requeue_count(job.id) >= 1
    assert cluster.wait(high, timeout=120) == "COMPLETED"
    return text


def test_real_preemption_saves_in_the_grace_time_requeues_and_resumes_bit_for_bit(
        preempting_slurm: LocalSlurm, shard_dir: Path, jobs, tmp_path: Path) -> None:  # noqa: F811
    job = submit(preempting_slurm, tmp_path / "low", env=train_env(shard_dir, tmp_path / "low" / "run"))
    wait_for(lambda: steps_logged(job) >= 1, job, "a training step")
    text = preempt_and_finish(preempting_slurm, job, tmp_path)
    for rank in (0, 1):
        assert f"[rank {rank}] WARNING pretrain.runtime.stopping: received SIGTERM" in text, text[-6000:]
    assert "training exited with code 75" in text
    assert_losses_equal_reference(job, jobs["reference"])


def catches_term(job: Job, rank: int) -> bool:
    """True once ``rank`` of ``job`` runs with a SIGTERM handler installed (SigCgt)."""
    try:
        status = Path(f"/proc/{rank_pid(job, rank)}/status").read_text()
    except (AssertionError, OSError):
        return False
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)


def test_preemption_during_set_up_is_requeued_without_counting_against_the_limit(
        preempting_slurm: LocalSlurm, shard_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    # MAX_NO_PROGRESS_RESTARTS=0: a restart without a step that counted would fail the job.
    # Preemption is a stop from outside (TERM to the ranks, not the batch shell): a long run
    # on a busy cluster must survive any number of them, also before its first step.
    job = submit(preempting_slurm, tmp_path / "low", env={
        **train_env(shard_dir, tmp_path / "low" / "run"), "MAX_NO_PROGRESS_RESTARTS": "0"})
    # Preempt as soon as both ranks catch TERM (their stop handler comes first thing, before
    # the imports of torch, megatron-core and DeepSpeed): the TERM lands in set-up.
    wait_for(lambda: all(catches_term(job, rank) for rank in (0, 1)), job, "the ranks' handlers")
    text = preempt_and_finish(preempting_slurm, job, tmp_path)
    assert "training exited with code 76" in text, text[-6000:]
    assert "stopped from outside during set-up (preemption?); not counted" in text
    assert "restarts in a row stopped before a single training step" not in text
    assert sorted(train_records(job.save)) == list(range(1, STEPS + 1))
