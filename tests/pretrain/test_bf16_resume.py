"""bf16 train -> save -> resume -> continue on CPU: DeepSpeed's BF16_Optimizer path.

bf16 with ZeRO-1 and ``data_types.grad_accum_dtype=fp32`` (trainer.deepspeed_config) runs
on DeepSpeed's ``BF16_Optimizer``, whose checkpoint holds each DP rank's fp32 master
partition. The GPU runs use it; the trainer refuses bf16 without CUDA (emulated bf16 is too
slow for real runs) unless ``LEV_ALLOW_CPU_BF16=1``, which these tests set, at tiny shapes.
"""

import pytest

from tests.conftest import rank_logs
from tests.pretrain.train_helpers import copy_checkpoint, run_training, train_records

pytestmark = pytest.mark.multiproc

BF16 = ["train.precision=bf16", "train.zero_stage=1", "train.train_steps=8"]
ALLOW = {"LEV_ALLOW_CPU_BF16": "1"}


def test_bf16_zero1_resume_repeats_the_uninterrupted_losses_bit_for_bit(shard_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(2, straight, shard_dir, *BF16, "checkpoint.save_interval=4", env=ALLOW)
    log = (tmp_path / "straight-logs" / "rank0.log").read_text()
    assert "ZeRO-1, bf16" in log
    # BF16_Optimizer's files: one fp32 master partition per DP rank.
    assert sorted(p.name for p in (straight / "step00000004").glob("*optim_states.pt")) == [
        f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)]

    copy_checkpoint(straight, "step00000004", resumed)
    run_training(2, resumed, shard_dir, *BF16, env=ALLOW)
    assert "resumed from" in (tmp_path / "resumed-logs" / "rank0.log").read_text()
    a, b = train_records(straight), train_records(resumed)
    for step in range(5, 9):
        assert b[step]["sample_ids"] == a[step]["sample_ids"], f"step {step} read other samples"
        assert b[step]["loss"] == a[step]["loss"], f"step {step}: {b[step]['loss']!r} != {a[step]['loss']!r}"
    assert min(b) == 5  # the resumed run trained steps 5-8 only


def test_bf16_on_cpu_is_refused_without_the_test_switch(shard_dir, tmp_path):
    run_training(1, tmp_path / "refused", shard_dir, *BF16, expect=2)
    log = rank_logs(tmp_path / "refused-logs")
    assert "train.precision=bf16 needs CUDA" in log and "train.precision=fp32" in log
