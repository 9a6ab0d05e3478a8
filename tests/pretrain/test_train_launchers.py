"""The same entrypoint under torchrun and mpiexec trains identically."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, cpu_env, free_port
from tests.pretrain.train_helpers import train_argv, train_records

pytestmark = pytest.mark.multiproc


def test_torchrun_and_mpiexec_runs_agree_step_for_step(shard_dir, tmp_path):
    mpiexec = shutil.which("mpiexec")
    assert mpiexec, "mpiexec (the mpich wheel in requirements.txt) is not on PATH"
    torchrun_dir, mpi_dir = tmp_path / "torchrun", tmp_path / "mpiexec"
    steps = ["train.train_steps=3"]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", "2", *train_argv(torchrun_dir, shard_dir, *steps)], cwd=REPO,
                   env=cpu_env(), check=True, capture_output=True, timeout=300)
    done = subprocess.run([mpiexec, "-n", "2", sys.executable, *train_argv(mpi_dir, shard_dir, *steps)],
                          cwd=REPO, env=cpu_env(MASTER_PORT=str(free_port())),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "via mpiexec" in done.stdout
    a, b = train_records(torchrun_dir), train_records(mpi_dir)
    assert [a[s]["loss"] for s in (1, 2, 3)] == [b[s]["loss"] for s in (1, 2, 3)]
