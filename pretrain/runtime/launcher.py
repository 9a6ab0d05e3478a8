"""Which launcher started this process and where the process sits in the job, from the
environment alone (no torch import): torchrun, Slurm's srun, mpiexec (MPICH, Open MPI),
or none. ``pretrain/runtime/distributed.py`` builds the process groups from it."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

__all__ = ["PROCESS_GROUP_ENV", "RankLayout", "detect_rank_layout", "node_name"]

#: The variables ``init_distributed`` publishes in ``os.environ`` for torch.distributed's
#: env:// rendezvous (and ``destroy_distributed`` puts back as it found them).
PROCESS_GROUP_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                     "MASTER_PORT")


@dataclass(frozen=True, slots=True)
class RankLayout:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    launcher: str


def _expand_tasks_per_node(spec: str) -> list[int]:
    """Slurm's compressed tasks-per-node list, e.g. ``"2(x3),1"`` -> ``[2, 2, 2, 1]``."""
    counts = []
    for part in spec.split(","):
        count, _, repeat = part.partition("(x")
        counts += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
    return counts


def detect_rank_layout(env: dict[str, str] | None = None) -> RankLayout:
    """Rank layout from the launcher's environment (single process if none)."""
    env = dict(os.environ) if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        return RankLayout(int(env["RANK"]), world, int(env.get("LOCAL_RANK", 0)),
                          int(env.get("LOCAL_WORLD_SIZE", world)), "torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and "SLURM_STEP_ID" in env:
        # SLURM_STEP_ID distinguishes an srun step from the batch shell itself.
        per_node = _expand_tasks_per_node(
            env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
            or env["SLURM_NTASKS"])
        local_world = per_node[min(int(env.get("SLURM_NODEID", 0)), len(per_node) - 1)]
        return RankLayout(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]),
                          int(env.get("SLURM_LOCALID", 0)), local_world, "srun")
    if "PMI_RANK" in env and "PMI_SIZE" in env:
        world = int(env["PMI_SIZE"])
        return RankLayout(int(env["PMI_RANK"]), world, int(env.get("MPI_LOCALRANKID", 0)),
                          int(env.get("MPI_LOCALNRANKS", world)), "mpiexec")
    if "OMPI_COMM_WORLD_RANK" in env:
        world = int(env["OMPI_COMM_WORLD_SIZE"])
        return RankLayout(int(env["OMPI_COMM_WORLD_RANK"]), world,
                          int(env.get("OMPI_COMM_WORLD_LOCAL_RANK", 0)),
                          int(env.get("OMPI_COMM_WORLD_LOCAL_SIZE", world)), "mpiexec")
    return RankLayout(0, 1, 0, 1, "single")


def node_name(env: dict[str, str] | None = None) -> str:
    """The node this process runs on, as the scheduler names it: Slurm's node name
    (``SLURMD_NODENAME``) where there is one, else the host name.

    Messages that say where something happened (heartbeats, leases, probes) use it, so they
    name what ``sinfo``, ``scontrol`` and ``--exclude`` take, also where several Slurm
    nodes share one host or node names are not host names.
    """
    env = os.environ if env is None else env
    return env.get("SLURMD_NODENAME") or socket.gethostname()
