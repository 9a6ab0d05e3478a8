"""A trained checkpoint as a model to run: find it, rebuild its config, load its weights.

Shared by ``pretrain.evaluate``, ``pretrain.export_hf`` and ``pretrain.generate``. The model
is rebuilt from the checkpoint's own config (``meta.json["config"]``) with the tensor
parallelism it was trained with, inside a DeepSpeed engine built as the trainer builds
it, so any ZeRO stage loads: ZeRO 0-2 load the module weights only (any DP size); ZeRO-3
loads its partitions and needs the DP size it was saved with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["EvaluationError", "build_inference_engine", "ensure_tensor_parallel",
           "load_checkpoint_config", "resolve_checkpoint"]


class EvaluationError(ValueError):
    """The checkpoint or data cannot be evaluated as asked (message says why and the fix)."""


def resolve_checkpoint(path: str | Path) -> Path:
    """The complete tag directory that ``path`` names (a tag or a save_dir).

    Raises:
        EvaluationError: no complete checkpoint there.
    """
    from pretrain.checkpoint.manager import META, CheckpointManager

    path = Path(path)
    if (path / META).is_file():
        return path
    tag_dir = None
    if path.is_dir():
        tag_dir = CheckpointManager(path, keep_last=1).find_resume("auto", set_aside=False)
    if tag_dir is None:
        raise EvaluationError(
            f"--checkpoint {path}: no complete checkpoint (a step* directory with {META}, or "
            f"a checkpoint.save_dir holding one); pass a finished run's save_dir or tag")
    return tag_dir


def load_checkpoint_config(tag_dir: Path, data_dir: str | Path, micro_batch_size: int | None):
    """The training config stored in ``tag_dir``, re-targeted at ``data_dir`` for eval.

    The batch becomes one micro-batch per rank (no accumulation), so any DP size fits.
    """
    from pretrain.checkpoint.manager import META
    from pretrain.config import config_from_dict

    meta = json.loads((tag_dir / META).read_text())
    if "config" not in meta:
        raise EvaluationError(f"{tag_dir}/meta.json has no 'config'; it predates config "
                              "recording and cannot be rebuilt")
    raw = meta["config"]
    mbs = micro_batch_size or raw["train"]["micro_batch_size"]
    raw["data"]["path"] = str(data_dir)
    raw["train"]["micro_batch_size"] = mbs
    raw["train"]["global_batch_size"] = mbs  # replaced per DP size in _ds_config
    # The modules it was trained with (a TE-trained checkpoint on a host without TE is
    # refused by model.layer_spec with what to do, not by a missing-key traceback).
    raw["model"]["layer_spec"] = meta.get("layer_spec", "local")
    return config_from_dict(raw), meta


def ensure_tensor_parallel(tp: int, seed: int) -> None:
    """(Re)build megatron's TP x DP groups for ``tp`` inside the existing process group."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    world = dist.get_world_size()
    if world % tp:
        raise EvaluationError(
            f"checkpoint trained with parallel.tensor_parallel={tp}; world size {world} is not "
            f"a multiple of it: launch {tp}, {2 * tp}, ... ranks")
    if ps.model_parallel_is_initialized() and ps.get_tensor_model_parallel_world_size() == tp:
        return
    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    ps.initialize_model_parallel(tensor_model_parallel_size=tp)
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)


def build_inference_engine(config, meta: dict[str, Any], tag_dir: Path):
    """A DeepSpeed engine like the trainer's, with the checkpoint's weights loaded."""
    from megatron.core import parallel_state as ps

    from megatron_patches.deepspeed_mapped_load import map_checkpoint_reads
    from pretrain.checkpoint.manager import refuse_unsafe_files
    from pretrain.training.trainer import build_engine

    dp = ps.get_data_parallel_world_size()
    config.train.global_batch_size = config.train.micro_batch_size * dp
    engine, _ = build_engine(config, dp)
    stage = config.train.zero_stage
    if stage == 3 and meta["dp_size"] != dp:
        raise EvaluationError(
            f"{tag_dir} is a ZeRO-3 checkpoint saved at DP={meta['dp_size']}; its weights are "
            f"partitioned over those ranks. Evaluate it with world size "
            f"{meta['dp_size'] * config.parallel.tensor_parallel} (DP={meta['dp_size']})")
    # ZeRO 0-2 keep full module weights in mp_rank_XX_model_states.pt: loading the module
    # only needs no optimizer partitions, so any DP size works. ZeRO-3 keeps weights
    # in its partitions and needs the full (optimizer-state-free) ZeRO load.
    refuse_unsafe_files(tag_dir)  # every rank alike, before any rank loads (exit 78)
    map_checkpoint_reads(engine)  # the ranks of a node share one mapped copy
    load_path, _ = engine.load_checkpoint(
        str(tag_dir.parent), tag=tag_dir.name, load_optimizer_states=False,
        load_lr_scheduler_states=False, load_module_only=stage != 3)
    if load_path is None:
        raise EvaluationError(f"DeepSpeed found no checkpoint files in {tag_dir}")
    engine.eval()
    return engine
