"""Shared test helpers: launching real multi-process jobs on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).resolve().parent / "workers"


def cpu_env(**extra: str) -> dict[str, str]:
    """Environment for child ranks: one BLAS thread each (2 ranks share 2 cores)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}")
    env.update(extra)
    return env


def run_torchrun(script: str | Path, nproc: int, *args: str, timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` under ``torchrun --nproc-per-node nproc``; fail with its output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--standalone", str(script), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env or cpu_env(), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                    f"\n--- stderr\n{proc.stderr[-8000:]}")
    return proc


def free_port() -> int:
    """A TCP port free on loopback right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_ranks(nproc: int, argv: list[str], *, env: dict[str, str] | None = None,
                log_dir: Path) -> list[subprocess.Popen]:
    """Start ``nproc`` real rank processes of ``python ARGV`` the way a launcher does.

    Each rank gets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* (as torchrun sets them) and its
    own log file, so a test can signal or kill one rank and read every rank's output.
    """
    port = str(free_port())
    procs = []
    log_dir.mkdir(parents=True, exist_ok=True)
    for rank in range(nproc):
        rank_env = cpu_env(RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank),
                           LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=port, **(env or {}))
        out = (log_dir / f"rank{rank}.log").open("w")
        procs.append(subprocess.Popen([sys.executable, *argv], cwd=REPO, env=rank_env,
                                      stdout=out, stderr=subprocess.STDOUT))
    return procs


def wait_ranks(procs: list[subprocess.Popen], log_dir: Path, timeout: float = 300) -> list[int]:
    """Wait for every rank; return exit codes (kills the rest and fails on timeout)."""
    import time

    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            logs = "\n".join(f.read_text()[-3000:] for f in sorted(log_dir.glob("rank*.log")))
            pytest.fail(f"ranks did not finish in {timeout}s\n{logs}")
    return codes


def rank_logs(log_dir: Path) -> str:
    return "\n".join(f"--- {f.name}\n{f.read_text()[-6000:]}" for f in sorted(log_dir.glob("rank*.log")))


# ---------------------------------------------------------------- parallel runs (CI)
#: Tests that share an expensive session fixture run on one xdist worker, so the fixture is
#: built once: the Slurm clusters, the trained checkpoints of tests/pretrain/conftest.py,
#: the data_prep corpora. Every other file is its own unit (module fixtures built once).
_SHARED_GROUPS = {
    "tests/slurm/test_multinode.py": "slurm_multinode",  # its own 3-node cluster
    "tests/slurm/": "slurm",
    "tests/pretrain/test_evaluate.py": "trained",
    "tests/pretrain/test_export_hf.py": "trained",
    "tests/pretrain/test_trust_checkpoints.py": "trained",
    "tests/pretrain/test_checkpoint_durability.py": "zero1_two_tags",
    "tests/pretrain/test_checkpoint_restart_io.py": "zero1_two_tags",
    "tests/data_prep/": "data_prep",
}
#: Units in this order first: the Slurm tests mostly wait (requeues, timeouts), so each
#: cluster's tests take a worker from the start and run beside everything else instead of
#: after it; then the longest CPU-bound units.
_FIRST = ("slurm", "slurm_multinode", "trained", "zero1_two_tags")


def _unit(item: pytest.Item) -> str:
    path = item.nodeid.split("::")[0]
    for prefix, group in _SHARED_GROUPS.items():
        if path.startswith(prefix):
            return group
    return path


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadgroup`` (scripts/test.sh): one unit of work per file or
    shared-fixture group, the long units first. A no-op order change otherwise."""
    if not getattr(config.option, "loadgroup", False):  # what xdist's workers are told
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_unit(item)))
    rank = {group: i for i, group in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(_unit(item), len(_FIRST)))  # stable: file order kept


@pytest.fixture(autouse=True)
def _process_group_environment_restored():
    """A test that initialises a process group in the pytest worker and never tears it
    down must not hand its MASTER_PORT or RANK to every process the worker's later tests
    start (EADDRINUSE, or ranks that all think they are rank 0); destroy_distributed puts
    them back itself."""
    from pretrain.runtime.launcher import PROCESS_GROUP_ENV

    saved = {key: os.environ.get(key) for key in PROCESS_GROUP_ENV}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
