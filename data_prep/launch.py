"""Who am I and how many of us are there: single process, ``mpiexec`` (mpi4py) or ``srun``.

- Under ``mpiexec -n N`` the launcher exports PMI/OMPI/PMIX variables; mpi4py then sees a
  world of N and we use it for barriers and aborts.
- Under ``srun``, mpi4py with the ``mpich`` wheel may start as N singletons (no PMI bridge to
  Slurm), each seeing a world of 1. We then take the rank and size from ``SLURM_PROCID`` /
  ``SLURM_NTASKS`` and coordinate through files in the output directory instead.
- With neither, one process does everything; mpi4py is not even imported.

Set ``LEV_SHARD_NO_MPI=1`` to skip mpi4py entirely (e.g. if an MPI library hangs at init).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["World", "detect_world", "wait_until"]

_MPI_LAUNCHER_VARS = (
    "PMI_SIZE",
    "PMI_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "MPI_LOCALNRANKS",
)


@dataclass(slots=True)
class World:
    """This process's place in the job.

    Attributes:
        rank: 0-based rank.
        size: Number of ranks.
        mode: ``"single"``, ``"mpi"`` (mpi4py world) or ``"files"`` (srun without an MPI world:
            ranks coordinate through files in the output directory).
        step_id: Identifies this launch in ``files`` mode (Slurm job, restart count and
            step), so marker files of an earlier launch, or of the attempt a requeue
            replaced, are never mistaken for this one's.
        comm: The mpi4py communicator in ``mpi`` mode.
    """

    rank: int = 0
    size: int = 1
    mode: str = "single"
    step_id: str = "local"
    comm: Any = field(default=None, repr=False)

    def barrier(self) -> None:
        """Wait for all ranks (``mpi`` mode only; ``files`` mode waits on marker files)."""
        if self.comm is not None:
            self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """Stop every rank after a failure on this one (otherwise the others wait forever)."""
        if self.comm is not None:
            self.comm.Abort(code)


def detect_world(env: dict[str, str] | None = None) -> World:
    """Find this process's rank and world size from the launcher (see module docstring)."""
    env = dict(os.environ) if env is None else env
    slurm_size = int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1)
    launched = any(v in env for v in _MPI_LAUNCHER_VARS) or slurm_size > 1
    if launched and env.get("LEV_SHARD_NO_MPI", "0") in ("", "0"):
        try:
            from mpi4py import MPI  # initialises MPI: only import when a launcher is present
        except ImportError:
            MPI = None  # noqa: N806
        if MPI is not None and MPI.COMM_WORLD.Get_size() > 1:
            comm = MPI.COMM_WORLD
            return World(rank=comm.Get_rank(), size=comm.Get_size(), mode="mpi", comm=comm)
    if slurm_size > 1 and "SLURM_PROCID" in env:
        # A requeued job keeps its id and step numbers; only the restart count tells this
        # attempt's markers from those the killed attempt left behind.
        step = (f"{env.get('SLURM_JOB_ID', 'job')}.r{env.get('SLURM_RESTART_COUNT', '0')}"
                f".{env.get('SLURM_STEP_ID', 'step')}")
        return World(rank=int(env["SLURM_PROCID"]), size=slurm_size, mode="files", step_id=step)
    return World()


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout_s: float = 0.0,
    poll_s: float = 0.5,
    check: Callable[[], None] | None = None,
) -> None:
    """Poll ``ready()`` until true; ``check()`` may raise to give up early.

    Raises:
        TimeoutError: after ``timeout_s`` seconds (0 = wait forever), naming ``what``.
    """
    start = time.monotonic()
    while not ready():
        if check is not None:
            check()
        if timeout_s and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"gave up after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)
