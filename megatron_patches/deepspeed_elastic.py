"""Let one DeepSpeed engine load a ZeRO-1/2 checkpoint saved at another DP size.

DeepSpeed 0.19.8 already holds the machinery: with ``zero_optimization.elastic_checkpoint``
each rank saves its optimizer partition as a list of per-group states, and
``DeepSpeedZeroOptimizer.load_state_dict`` merges every saved partition and re-splits
it for the current DP size (``_restore_elastic_base_optimizer_state``,
``_restore_from_elastic_fp32_weights``). But ``DeepSpeedEngine._load_zero_checkpoint``
refuses up front whenever the saved and current DP sizes differ. This module replaces
that one method *on one engine instance* (not the class) with a version that reads
every saved partition and hands them to the same optimizer loader; nothing else changes.
TP must be unchanged (each TP rank reads its own ``mp_rank`` files).
"""

from __future__ import annotations

import logging
import types

__all__ = ["enable_elastic_zero_resume"]

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


def _load_zero_checkpoint_any_dp(self, load_dir, tag, load_optimizer_states=True):
    saved_dp = self.loaded_checkpoint_dp_world_size
    if saved_dp == self.seq_dp_world_size:
        return self._load_zero_checkpoint_same_dp(load_dir, tag, load_optimizer_states)
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


def enable_elastic_zero_resume(engine) -> None:
    """Allow ``engine.load_checkpoint`` across DP sizes (ZeRO stage 1 or 2, elastic ckpt).

    Raises:
        ValueError: the engine is not ZeRO-1/2 with ``elastic_checkpoint`` enabled.
    """
    if engine.zero_optimization_stage() not in (1, 2) or not engine.zero_elastic_checkpoint():
        raise ValueError("elastic resume needs ZeRO stage 1 or 2 with "
                         "zero_optimization.elastic_checkpoint=true")
    engine._load_zero_checkpoint_same_dp = engine._load_zero_checkpoint
    engine._load_zero_checkpoint = types.MethodType(_load_zero_checkpoint_any_dp, engine)
