"""torch.distributed + megatron-core parallel_state set-up under any launcher.

Reads the rank layout from torchrun (RANK/WORLD_SIZE/LOCAL_RANK), Slurm's srun
(SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID and the job's node list) or mpiexec (MPICH's
PMI_RANK/PMI_SIZE/MPI_LOCALRANKID, Open MPI's OMPI_COMM_WORLD_*), exports the
torchrun-style variables so every library sees one truth, then initialises nccl on
CUDA or gloo on CPU and megatron-core's TP x DP groups.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import socket
import subprocess

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

from megatron_patches.cpu_shims import apply_cpu_shims
from pretrain.runtime.launcher import PROCESS_GROUP_ENV, RankLayout, detect_rank_layout

__all__ = ["RankLayout", "all_gather_object", "broadcast_object", "cuda_device_index",
           "destroy_distributed", "detect_rank_layout", "init_distributed"]

log = logging.getLogger(__name__)

#: ``os.environ``'s process-group variables before init_distributed published its own
#: (None: not initialised by it). In-process callers (parameter counts, the study's
#: reports, tests) must get them back: a MASTER_PORT left behind would send every process
#: they start later to one port, a RANK left behind would make every such rank rank 0.
_env_before_init: dict[str, str | None] | None = None


def _master_addr(layout: RankLayout) -> str:
    """The rendezvous host: MASTER_ADDR if set, else (under srun) the first node's NodeAddr."""
    if "MASTER_ADDR" in os.environ:
        return os.environ["MASTER_ADDR"]
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if layout.launcher == "srun" and nodelist:
        hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True,
                               capture_output=True, text=True).stdout.split()
        return _slurm_node_addr(hosts[0])
    return "127.0.0.1"


def _slurm_node_addr(node: str) -> str:
    """A Slurm node's NodeAddr: its name on most clusters, but not where node names are
    not host names (renamed nodes, several slurmd on one host). The name if unknown."""
    try:
        out = subprocess.run(["scontrol", "show", "node", "-o", node], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return node
    match = re.search(r"(?:^|\s)NodeAddr=(\S+)", out)
    return match.group(1) if match else node


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cuda_device_index(local_rank: int, device_count: int) -> int:
    """The visible GPU this rank drives.

    ``local_rank`` when the node's GPUs are all visible to every rank (torchrun, srun
    with ``--gpus-per-node``); ``0`` when each task sees exactly one (srun
    ``--gpus-per-task=1`` sets ``CUDA_VISIBLE_DEVICES`` per task, so ``local_rank`` would
    name a GPU this process cannot see: "invalid device ordinal").

    Raises:
        ValueError: several GPUs visible but fewer than ``local_rank + 1``.
    """
    if device_count < 1:
        raise ValueError("no CUDA device visible to this process")
    if local_rank < device_count:
        return local_rank
    if device_count == 1:
        return 0
    raise ValueError(
        f"local rank {local_rank} but this process sees {device_count} GPUs "
        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); launch "
        f"one rank per GPU with all of them visible, or one GPU per task")


def init_distributed(tensor_parallel: int, seed: int, *, timeout_minutes: float = 30) -> RankLayout:
    """Initialise the process group, megatron-core's TP x DP groups and the RNG tracker.

    Raises:
        ValueError: the world size is not a multiple of ``tensor_parallel``.
    """
    layout = detect_rank_layout()
    if layout.world_size % tensor_parallel:
        raise ValueError(
            f"world size {layout.world_size} is not a multiple of "
            f"parallel.tensor_parallel={tensor_parallel}; launch a multiple of "
            f"{tensor_parallel} ranks or change tensor_parallel"
        )
    global _env_before_init
    if _env_before_init is None:
        _env_before_init = {key: os.environ.get(key) for key in PROCESS_GROUP_ENV}
    os.environ.update(RANK=str(layout.rank), WORLD_SIZE=str(layout.world_size),
                      LOCAL_RANK=str(layout.local_rank),
                      LOCAL_WORLD_SIZE=str(layout.local_world_size))
    os.environ.setdefault("MASTER_ADDR", _master_addr(layout))
    if "MASTER_PORT" not in os.environ:
        if layout.world_size > 1:
            # Every rank must agree; a job-derived port avoids clashes between jobs on a
            # node, and 20000-31999 stays below Linux's ephemeral range (32768+).
            job = int(os.environ.get("SLURM_JOB_ID", "0"))
            os.environ["MASTER_PORT"] = str(20000 + job % 12000)
        else:
            os.environ["MASTER_PORT"] = str(_free_port())

    cuda = torch.cuda.is_available()
    if cuda:
        # DeepSpeed is handed the same device (trainer.build_engine: args.device_rank).
        torch.cuda.set_device(cuda_device_index(layout.local_rank, torch.cuda.device_count()))
    else:
        apply_cpu_shims()
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if cuda else "gloo", rank=layout.rank,
            world_size=layout.world_size,
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(tensor_model_parallel_size=tensor_parallel)
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)
    log.info("rank %d/%d (local %d/%d) via %s, backend %s, TP=%d DP=%d", layout.rank,
             layout.world_size, layout.local_rank, layout.local_world_size, layout.launcher,
             dist.get_backend(), tensor_parallel, layout.world_size // tensor_parallel)
    return layout


def all_gather_object(obj):
    """Every rank's ``obj``, in rank order (``[obj]`` without a process group)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (``obj`` itself without a process group)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def destroy_distributed() -> None:
    """Tear down megatron's groups and the process group, and put back the environment
    variables init_distributed published (safe to call twice)."""
    global _env_before_init
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
    for key, value in (_env_before_init or {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _env_before_init = None
