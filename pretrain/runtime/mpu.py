"""DeepSpeed's ``mpu`` interface over megatron-core ``parallel_state`` (TP x DP, no PP).

DeepSpeed asks the mpu for the data-parallel group (gradient all-reduce, ZeRO
partitioning) and the model-parallel group (gradient-norm of TP-sharded parameters,
checkpoint file names). With no pipeline parallelism, model parallel == tensor parallel.
"""

from __future__ import annotations

from megatron.core import parallel_state as ps

__all__ = ["MegatronMPU"]


class MegatronMPU:
    """The subset of Megatron's legacy ``mpu`` module that DeepSpeed 0.19 calls."""

    get_data_parallel_group = staticmethod(ps.get_data_parallel_group)
    get_data_parallel_rank = staticmethod(ps.get_data_parallel_rank)
    get_data_parallel_world_size = staticmethod(ps.get_data_parallel_world_size)
    get_tensor_model_parallel_group = staticmethod(ps.get_tensor_model_parallel_group)
    get_tensor_model_parallel_rank = staticmethod(ps.get_tensor_model_parallel_rank)
    get_tensor_model_parallel_world_size = staticmethod(ps.get_tensor_model_parallel_world_size)
    get_tensor_model_parallel_src_rank = staticmethod(ps.get_tensor_model_parallel_src_rank)
    get_model_parallel_group = staticmethod(ps.get_tensor_model_parallel_group)
    get_model_parallel_rank = staticmethod(ps.get_tensor_model_parallel_rank)
    get_model_parallel_world_size = staticmethod(ps.get_tensor_model_parallel_world_size)
    get_pipeline_model_parallel_group = staticmethod(ps.get_pipeline_model_parallel_group)
    get_pipeline_model_parallel_rank = staticmethod(ps.get_pipeline_model_parallel_rank)
    get_pipeline_model_parallel_world_size = staticmethod(
        ps.get_pipeline_model_parallel_world_size)

    @staticmethod
    def get_data_parallel_group_ranks() -> list[int]:
        """Global ranks of this rank's data-parallel group."""
        import torch.distributed as dist

        return dist.get_process_group_ranks(ps.get_data_parallel_group())
