"""What the check runs: its parts in order, their time caps, and the dry run's shapes."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ALL_REDUCE_TIMEOUT_S", "BUDGET_S", "DRY_SMALL_RUN", "DRY_THROUGHPUT", "EXIT_OOM",
           "MATMUL", "NVIDIA_SMI_TIMEOUT_S", "PACKAGE", "PARTS", "PART_LIMITS_S", "REPO",
           "SMALL_RUN", "TOKENIZER_VOCAB", "TRAINING_PARTS", "TRAINING_IMPORTS"]

PACKAGE = Path(__file__).resolve().parent
"""This package: ``python scripts/gpu_check SUBCOMMAND`` runs it (workers included)."""
REPO = PACKAGE.parents[1]

BUDGET_S = 360.0
"""The whole check, install included (6 minutes)."""

PARTS = ["install", "environment", "throughput_lev", "throughput_tied", "lev_vs_tied", "data",
         "train_resume", "evaluate"]
PART_LIMITS_S = {  # part: (cap, minimum worth starting), seconds of wall time
    # 90 s: a cold `import torch` + CUDA init + DeepSpeed/megatron imports + NCCL on a
    # freshly started host; 40 s was too tight to be sure.
    "environment": (90, 20), "throughput_lev": (110, 50), "throughput_tied": (110, 50),
    "data": (40, 10), "train_resume": (120, 45), "evaluate": (60, 20),
}
TRAINING_PARTS = ("throughput_lev", "throughput_tied", "train_resume", "evaluate")
"""The parts that train or evaluate on the device (NCCL, DeepSpeed, megatron-core)."""

NVIDIA_SMI_TIMEOUT_S = 10
ALL_REDUCE_TIMEOUT_S = 20
"""The world-size-1 all-reduce: a hung NCCL shows here, not in three later parts."""
MATMUL = {"gpu": (8192, 2.0), "dry": (256, 0.2)}
"""bf16 matmul ceiling: (n of the n x n x n product, seconds of repeats), on a GPU and
else (the dry run, or a host where torch sees no CUDA)."""

TRAINING_IMPORTS = ["megatron.core", "deepspeed", "pretrain.training.trainer"]
"""What training imports; a failure here fails every part in TRAINING_PARTS."""

EXIT_OOM = 3  # `throughput` ran out of device memory (the orchestrator retries smaller)

# The dry run: the same steps at shapes two CPU cores run in seconds, in bf16 like the GPU
# (the configs' precision and ZeRO stage: bf16 ZeRO-2 runs on DeepSpeedZeroOptimizer).
DRY_THROUGHPUT = ["model.num_layers=2", "model.hidden_size=32", "model.num_attention_heads=4",
                  "model.ffn_hidden_size=64", "model.vocab_size=384", "model.seq_length=32",
                  "lev.num_modes=16", "lev.seed_dim=4", "lev.grid_size=6",
                  "train.micro_batch_size=2", "train.global_batch_size=4"]
# The small run through pretrain.train: tiny_lev.yaml's shape; the schedule does not depend
# on train_steps (decay_steps fixed), so 4 + 4 resumed steps must equal 8 straight ones.
SMALL_RUN = ["train.train_steps=8", "optimizer.decay_steps=8", "optimizer.warmup_steps=2",
             "train.log_interval=1", "train.eval_interval=0", "train.log_sample_ids=true",
             "train.zero_stage=1", "checkpoint.save_interval=4", "checkpoint.keep_last=3",
             "model.vocab_size=1024", "train.precision=bf16"]
DRY_SMALL_RUN = [o for o in DRY_THROUGHPUT if not o.startswith(("model.vocab", "train."))]
DRY_SMALL_RUN += ["train.micro_batch_size=2", "train.global_batch_size=8"]
TOKENIZER_VOCAB = 1024
