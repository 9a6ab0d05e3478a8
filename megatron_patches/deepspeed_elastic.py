"""ZeRO-1/2 resume for one DeepSpeed engine: any DP size, and only what a rank needs.

DeepSpeed 0.19.8 already holds the machinery: with ``zero_optimization.elastic_checkpoint``
each rank saves its optimizer partition as a list of per-group states, and
``DeepSpeedZeroOptimizer.load_state_dict`` merges every saved partition and re-splits
it for the current DP size (``_restore_elastic_base_optimizer_state``,
``_restore_from_elastic_fp32_weights``). But ``DeepSpeedEngine._load_zero_checkpoint``
refuses up front whenever the saved and current DP sizes differ, and with
``elastic_checkpoint`` on it reads *every* rank's optimizer partition on every rank even
when the DP size is unchanged (at 1.2B on 32 GPUs: ~115 GB of host RAM per node, ~460 GB
read per requeue). This module replaces that one method *on one engine instance* (not
the class): at an unchanged DP size it reads only the rank's own partition and hands it
to DeepSpeed's "elastic checkpoint into a rigid run" loader (which restores the lean
saved state into this rank's padded partition); at another DP size it reads every saved
partition and hands them to DeepSpeed's elastic merge. TP must be unchanged (each TP
rank reads its own ``mp_rank`` files). bf16 ZeRO-1 with fp32 gradient accumulation runs
on DeepSpeed's ``BF16_Optimizer``, whose loader zero-pads the fp32 masters of another DP
size (silently wrong): a DP change is refused there, by name, before anything is read.
"""

from __future__ import annotations

import logging
import types

import torch.distributed as dist

__all__ = ["enable_elastic_zero_resume", "install_zero_resume"]

_OPTIMIZER_STATE_DICT = "optimizer_state_dict"  # deepspeed.checkpoint.constants

log = logging.getLogger(__name__)


class _SavedPartitions(list):
    """The saved partitions, indexable by any current DP rank.

    Why: the loader reads rank-independent settings (loss scaler, clip) from
    ``state_dict_list[current_dp_rank]``, which does not exist when the DP size grew;
    those settings are identical in every partition, so the last one serves. Iteration
    (used to merge the optimizer state) still sees each saved partition exactly once.
    """

    def __getitem__(self, index):
        if isinstance(index, int) and index >= len(self):
            index = len(self) - 1
        return super().__getitem__(index)


def _load_own_partition(self, load_dir, tag, load_optimizer_states):
    """Same DP size: read this rank's partition file only."""
    names = self._get_mp_rank_zero_checkpoint_names(
        load_dir=load_dir, tag=tag, mp_rank=self.checkpoint_mp_rank,
        dp_world_size=self.loaded_checkpoint_dp_world_size, bf16_mode=self.bfloat16_enabled())
    dp_rank = dist.get_rank(group=self.optimizer.dp_process_group)
    own = self.checkpoint_engine.load(names[dp_rank], map_location="cpu")[_OPTIMIZER_STATE_DICT]
    state_dicts = [None] * len(names)
    state_dicts[dp_rank] = own
    optimizer = self.optimizer
    elastic = getattr(optimizer, "elastic_checkpoint", False)
    had_step = "step" in optimizer.optimizer.param_groups[0]
    # The "elastic checkpoint into a rigid run" branch reads state_dict_list[dp_rank] only.
    optimizer.elastic_checkpoint = False
    own.setdefault("base_optimizer_state_step", None)
    try:
        optimizer.load_state_dict(
            state_dict_list=state_dicts, load_optimizer_states=load_optimizer_states,
            load_from_fp32_weights=self.zero_load_from_fp32_weights(),
            param_shapes=self._get_zero_param_shapes())
    finally:
        optimizer.elastic_checkpoint = elastic
        if not had_step:  # torch's AdamW keeps its step per parameter, not per group
            for group in optimizer.optimizer.param_groups:
                group.pop("step", None)
    log.info("read 1 of %d ZeRO optimizer partitions (this rank's: %s)", len(names),
             names[dp_rank])
    return True


def _load_zero_checkpoint_any_dp(self, load_dir, tag, load_optimizer_states=True):
    saved_dp = self.loaded_checkpoint_dp_world_size
    if saved_dp == self.seq_dp_world_size:
        if not load_optimizer_states:
            return self._load_zero_checkpoint_same_dp(load_dir, tag, load_optimizer_states)
        return _load_own_partition(self, load_dir, tag, load_optimizer_states)
    if type(self.optimizer).__name__ == "BF16_Optimizer":
        raise ValueError(
            f"checkpoint {tag} was saved at DP={saved_dp}; this run has "
            f"DP={self.seq_dp_world_size}. bf16 ZeRO-1 (DeepSpeed's BF16_Optimizer) cannot "
            f"re-partition its fp32 master weights; resume at DP={saved_dp}, or train with "
            f"train.zero_stage=2 for runs that change size")
    names = self._get_mp_rank_zero_checkpoint_names(
        load_dir=load_dir, tag=tag, mp_rank=self.checkpoint_mp_rank, dp_world_size=saved_dp,
        bf16_mode=self.bfloat16_enabled())
    state_dicts = _SavedPartitions(self._get_all_zero_checkpoint_state_dicts(names))
    self.optimizer.load_state_dict(
        state_dict_list=state_dicts, load_optimizer_states=load_optimizer_states,
        load_from_fp32_weights=self.zero_load_from_fp32_weights(),
        param_shapes=self._get_zero_param_shapes())
    log.info("re-partitioned ZeRO optimizer state saved at DP=%d for DP=%d", saved_dp,
             self.seq_dp_world_size)
    return True


def install_zero_resume(engine) -> None:
    """Make ``engine.load_checkpoint`` read only its own partition at the same DP size and
    re-partition across DP sizes (ZeRO stage 1 or 2; idempotent).

    Raises:
        ValueError: the engine is not ZeRO-1/2.
    """
    if engine.zero_optimization_stage() not in (1, 2):
        raise ValueError("ZeRO resume needs ZeRO stage 1 or 2")
    if getattr(engine, "_load_zero_checkpoint_same_dp", None) is not None:
        return
    engine._load_zero_checkpoint_same_dp = engine._load_zero_checkpoint
    engine._load_zero_checkpoint = types.MethodType(_load_zero_checkpoint_any_dp, engine)


def enable_elastic_zero_resume(engine) -> None:
    """Allow ``engine.load_checkpoint`` across DP sizes (ZeRO stage 1 or 2, elastic ckpt).

    Raises:
        ValueError: the engine is not ZeRO-1/2 with ``elastic_checkpoint`` enabled, or is
            bf16 ZeRO-1 (``BF16_Optimizer``), whose masters cannot be re-partitioned.
    """
    if type(engine.optimizer).__name__ == "BF16_Optimizer":
        raise ValueError("bf16 ZeRO-1 (DeepSpeed's BF16_Optimizer) cannot resume at another "
                         "DP size: resume at the saved DP size, or use train.zero_stage=2")
    if engine.zero_optimization_stage() not in (1, 2) or not engine.zero_elastic_checkpoint():
        raise ValueError("elastic resume needs ZeRO stage 1 or 2 with "
                         "zero_optimization.elastic_checkpoint=true")
    install_zero_resume(engine)
