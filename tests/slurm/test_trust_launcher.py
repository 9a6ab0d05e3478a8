"""slurm/launch_pretrain.sh treats what it finds in SAVE_DIR as data (docs/trust.md).

Stand-in ranks (a script in PYTHON's place, as in test_pretrain_job.py) play the part of
someone who can write the job's state directory: they plant a counter holding shell code
or a symlink at a state file's name, then exit as the training would. The launcher must
neither run the code nor write through the link; a run that exits 78 is never requeued.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from local_cluster import LocalSlurm

from tests.pretrain.conftest import shard_dir  # noqa: F401  (session fixture: tiny shards)
from tests.slurm.test_pretrain_job import submit, train_env

pytestmark = [pytest.mark.slurm, pytest.mark.multiproc]


def stand_in(path: Path, body: str) -> Path:
    """An executable that the job's srun runs in place of python (one task)."""
    path.write_text("#!/bin/bash\nstate=$(dirname \"$LEV_EXIT_CODE_FILE\")\n" + body)
    path.chmod(0o755)
    return path


def wait_for(condition, what: str, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_counter_file_holding_shell_code_is_refused_not_run(slurm: LocalSlurm,
                                                              shard_dir: Path,  # noqa: F811
                                                              tmp_path: Path) -> None:
    marker, ready = tmp_path / "marker", tmp_path / "ready"
    # Plant the counter, then wait for the time limit's USR1 and exit 76 (no step taken):
    # the launcher then reads no_progress to count the restart. The array named must be a
    # set variable of the launcher's (it runs under `set -u`).
    ranks = stand_in(tmp_path / "ranks", f"echo 'MASTER_PORT[$(touch {marker})]' > "
                     "\"$state/no_progress\"\n"
                     f"trap 'exit 76' USR1\ntouch {ready}\n"
                     "for _ in $(seq 600); do sleep 0.1; done\nexit 1\n")
    job = submit(slurm, tmp_path, "--ntasks-per-node=1",
                 env={**train_env(shard_dir, tmp_path / "run"), "PYTHON": str(ranks)})
    wait_for(ready.exists, "the stand-in rank")
    slurm.signal(job.id, "USR1", batch_only=True)
    state, text = job.finish(timeout=120)

    assert not marker.exists(), "the counter's content ran as a command"
    assert state == "FAILED" and slurm.requeue_count(job.id) == 0, text[-3000:]
    assert "no_progress holds 'MASTER_PORT[$(touch" in text and "not a count" in text, text[-3000:]


def test_a_state_file_planted_as_a_symlink_is_replaced_not_written_through(
        slurm: LocalSlurm, shard_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # A crash before any checkpoint: the launcher records failures_since.
    ranks = stand_in(tmp_path / "ranks", f"ln -s {victim} \"$state/failures_since\"\nexit 1\n")
    job = submit(slurm, tmp_path, "--ntasks-per-node=1",
                 env={**train_env(shard_dir, tmp_path / "run"), "PYTHON": str(ranks),
                      "MAX_FAILURE_RETRIES": "0"})
    state, text = job.finish(timeout=120)

    assert state == "FAILED", text[-3000:]
    assert victim.read_text() == "precious\n"
    assert "not retrying" in text


def test_exit_78_is_final_with_the_reason_in_the_log(slurm: LocalSlurm,
                                                      shard_dir: Path,  # noqa: F811
                                                      tmp_path: Path) -> None:
    ranks = stand_in(tmp_path / "ranks", "exit 78\n")
    job = submit(slurm, tmp_path, "--ntasks-per-node=1",
                 env={**train_env(shard_dir, tmp_path / "run"), "PYTHON": str(ranks)})
    state, text = job.finish(timeout=120)

    assert state == "FAILED" and slurm.requeue_count(job.id) == 0, text[-3000:]
    assert "training refused its input (exit 78" in text and "not requeued" in text


def test_a_state_directory_of_ours_that_others_could_write_is_closed_not_refused(
        slurm: LocalSlurm, shard_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """An earlier launcher under umask 002 left .launcher/ group-writable: a requeue after
    an upgrade must go on, with the directory closed to others."""
    run = tmp_path / "run"
    (run / ".launcher").mkdir(parents=True)
    (run / ".launcher").chmod(0o775)
    ranks = stand_in(tmp_path / "ranks", "exit 0\n")
    job = submit(slurm, tmp_path, "--ntasks-per-node=1",
                 env={**train_env(shard_dir, run), "PYTHON": str(ranks)})
    state, text = job.finish(timeout=120)

    assert state == "COMPLETED", text[-3000:]
    assert (run / ".launcher").stat().st_mode & 0o022 == 0
    assert ".launcher was writable by others (drwxrwxr-x): chmod go-w" in text, text[-3000:]
