"""The local Slurm runs real multi-task jobs, delivers batch signals, requeues, and stops cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from local_cluster import LocalSlurm

pytestmark = pytest.mark.slurm


def write_script(path: Path, body: str) -> Path:
    """A bash batch script at ``path``."""
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


def wait_for_file(path: Path, timeout: float = 60.0) -> None:
    """Wait until ``path`` exists (a job's "I am ready" mark)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.1)


def test_srun_gives_each_of_two_tasks_its_rank(slurm: LocalSlurm, tmp_path: Path) -> None:
    script = write_script(tmp_path / "ranks.sh", f"""
srun bash -c 'echo "$SLURM_PROCID $SLURM_NTASKS $SLURM_LOCALID" > {tmp_path}/task_$SLURM_PROCID'
""")
    job = slurm.sbatch(script, "--ntasks=2", f"--output={tmp_path}/out.log", cwd=tmp_path)

    assert slurm.wait(job, timeout=60) == "COMPLETED", (tmp_path / "out.log").read_text()
    # One node: the local id equals the global one.
    assert (tmp_path / "task_0").read_text().split() == ["0", "2", "0"]
    assert (tmp_path / "task_1").read_text().split() == ["1", "2", "1"]


def test_batch_shell_traps_usr1_and_requeues_itself(slurm: LocalSlurm, tmp_path: Path) -> None:
    # The pattern the pretraining script uses: trap USR1 in the batch shell, requeue, exit.
    # The first run blocks in `wait` (a shell runs traps only between commands, so the
    # long-running child goes to the background); the requeued run finishes at once.
    script = write_script(tmp_path / "requeue.sh", f"""
echo "run restart_count=${{SLURM_RESTART_COUNT:-unset}}" >> {tmp_path}/runs
if [ -n "$SLURM_RESTART_COUNT" ]; then exit 0; fi
trap 'echo got USR1 >> {tmp_path}/runs; scontrol requeue $SLURM_JOB_ID; exit 0' USR1
sleep 600 &
touch {tmp_path}/ready
wait
""")
    job = slurm.sbatch(script, f"--output={tmp_path}/out.log", "--open-mode=append", cwd=tmp_path)
    wait_for_file(tmp_path / "ready")

    slurm.signal(job, "USR1", batch_only=True)

    assert slurm.wait(job, timeout=60) == "COMPLETED", (tmp_path / "out.log").read_text()
    assert (tmp_path / "runs").read_text().splitlines() == [
        "run restart_count=unset", "got USR1", "run restart_count=1"]
    assert slurm.requeue_count(job) == 1


def test_batch_shell_forwards_usr1_to_every_srun_task(slurm: LocalSlurm, tmp_path: Path) -> None:
    # `scancel --batch` signals only the batch shell; `kill -USR1 <srun pid>` makes srun
    # deliver it to all tasks of the step, whose exit code the shell then sees.
    script = write_script(tmp_path / "forward.sh", f"""
srun bash -c 'trap "echo \\$SLURM_PROCID > {tmp_path}/usr1_\\$SLURM_PROCID; exit 42" USR1
              touch {tmp_path}/up_$SLURM_PROCID; while true; do sleep 0.1; done' &
step=$!
trap 'kill -USR1 $step; wait $step; echo "step exit $?" > {tmp_path}/step_exit; exit 0' USR1
wait $step
""")
    job = slurm.sbatch(script, "--ntasks=2", f"--output={tmp_path}/out.log", cwd=tmp_path)
    wait_for_file(tmp_path / "up_0")
    wait_for_file(tmp_path / "up_1")

    slurm.signal(job, "USR1", batch_only=True)

    assert slurm.wait(job, timeout=60) == "COMPLETED", (tmp_path / "out.log").read_text()
    assert (tmp_path / "usr1_0").exists() and (tmp_path / "usr1_1").exists()
    assert (tmp_path / "step_exit").read_text().strip() == "step exit 42"


@pytest.mark.usefixtures("require_slurm")
def test_stop_leaves_no_process_it_started(tmp_path: Path) -> None:
    cluster = LocalSlurm(tmp_path / "cluster").start()
    daemons = cluster.running()
    script = write_script(tmp_path / "sleeper.sh", f"echo $$ > {tmp_path}/job_pid; sleep 600\n")
    cluster.sbatch(script, f"--output={tmp_path}/out.log", cwd=tmp_path)
    wait_for_file(tmp_path / "job_pid")
    job_pid = int((tmp_path / "job_pid").read_text())

    cluster.stop()

    assert sorted(daemons) == ["munged", "slurmctld", "slurmd"]
    assert cluster.running() == {} and cluster.leftover_pids() == []
    for pid in [*daemons.values(), job_pid]:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"pid {pid} still runs"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
