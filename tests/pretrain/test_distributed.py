"""Rank layout from each launcher's environment (what every rank is told it is)."""

import socket

import pytest

from pretrain.runtime.distributed import cuda_device_index, detect_rank_layout
from pretrain.runtime.launcher import node_name


def test_torchrun_variables_are_read_as_is():
    layout = detect_rank_layout({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                                 "LOCAL_WORLD_SIZE": "4"})
    assert (layout.rank, layout.world_size, layout.local_rank, layout.local_world_size,
            layout.launcher) == (5, 8, 1, 4, "torchrun")


@pytest.mark.parametrize("spec,node,expected", [("4(x2)", "1", 4), ("2,1", "1", 1),
                                                ("2(x2),1", "2", 1), ("3", "0", 3)])
def test_srun_local_world_size_is_this_nodes_task_count(spec, node, expected):
    env = {"SLURM_PROCID": "2", "SLURM_NTASKS": "5", "SLURM_LOCALID": "0", "SLURM_STEP_ID": "0",
           "SLURM_STEP_TASKS_PER_NODE": spec, "SLURM_NODEID": node,
           "SLURM_NTASKS_PER_NODE": "8"}  # job-wide: must not win over the step's own
    layout = detect_rank_layout(env)
    assert (layout.rank, layout.world_size, layout.local_world_size, layout.launcher) == (
        2, 5, expected, "srun")


def test_the_batch_shell_itself_is_not_an_srun_rank():
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "7"}  # no SLURM_STEP_ID
    assert detect_rank_layout(env).launcher == "single"


def test_mpich_mpiexec_variables():
    layout = detect_rank_layout({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1",
                                 "MPI_LOCALNRANKS": "2"})
    assert (layout.rank, layout.world_size, layout.local_rank, layout.launcher) == (
        1, 2, 1, "mpiexec")


def test_no_launcher_is_one_process():
    assert detect_rank_layout({}).world_size == 1


@pytest.mark.parametrize(("local_rank", "visible", "device"), [
    (3, 8, 3),  # every GPU of the node visible to every rank (torchrun, --gpus-per-node)
    (3, 1, 0),  # srun --gpus-per-task=1: each task sees only its own GPU, as device 0
    (0, 1, 0),
])
def test_each_rank_drives_a_gpu_it_can_see(local_rank, visible, device):
    assert cuda_device_index(local_rank, visible) == device


def test_too_few_visible_gpus_for_the_local_rank_is_refused_by_name():
    with pytest.raises(ValueError, match=r"local rank 5 but this process sees 2 GPUs"):
        cuda_device_index(5, 2)


def test_the_node_is_named_as_slurm_names_it_where_there_is_a_slurm_node():
    # Heartbeats, leases and probes say where something happened in the names that sinfo
    # and --exclude take (several slurmd can share one host).
    assert node_name({"SLURMD_NODENAME": "gpu-a17"}) == "gpu-a17"
    assert node_name({}) == socket.gethostname()
