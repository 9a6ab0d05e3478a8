"""One srun rank of ``test_multinode.py``'s node-count change under the shipped 1.2B
optimizer settings: DeepSpeed built from ``deepspeed_config(lev_1b2.yaml)`` (bf16, ZeRO
stage from the config, fp32 gradient accumulation and reduction, elastic checkpoints) over
a small bf16 model, because the real 1.2B model needs GPUs (and pretrain.train refuses
bf16 without CUDA) while the optimizer's partitioning is the same code at any size.

    srun ... python tests/slurm/zero_resume_ranks.py save DIR     # any DP: train, save, train on
    srun ... python tests/slurm/zero_resume_ranks.py resume DIR   # another DP: load, compare, train on

``save`` trains 3 steps, saves, records every parameter's full fp32 master weight and Adam
moments (gathered across the ZeRO partitions), trains 2 more steps and records them again.
``resume`` loads the checkpoint at its own DP size as the trainer does on a DP change
(``enable_elastic_zero_resume``), checks the restored state equals the recorded one
exactly, trains the same 2 steps (the same global batches) and checks the result against
the recording (to reduction-order rounding: the DP sizes sum gradients in other orders).
Rank 0 writes ``DIR/<phase>.json`` with what it found.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import deepspeed  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state  # noqa: E402

from megatron_patches.deepspeed_elastic import enable_elastic_zero_resume  # noqa: E402
from megatron_patches.quiet import quiet_deepspeed  # noqa: E402
from pretrain.config import load_config  # noqa: E402
from pretrain.training.optimizer import AdamW  # noqa: E402  (the trainer's: step per group)
from pretrain.training.trainer import deepspeed_config  # noqa: E402

MICRO, GLOBAL = 2, 4  # per-rank micro-batch and global batch: DP 2 -> no accumulation, DP 1 -> 2


def state(engine) -> dict[str, list]:
    """Every parameter's full fp32 master and Adam moments, gathered from all partitions."""
    # DeepSpeed links the Adam moments to the parameters lazily, at the first step after
    # the state is created; a freshly loaded engine has not stepped yet.
    engine.optimizer._lazy_init_hp_params_optimizer_state()
    out = {}
    for name, param in engine.module.named_parameters():
        out[name] = [safe_get_full_fp32_param(param).flatten().tolist(),
                     safe_get_full_optimizer_state(param, "exp_avg").flatten().tolist(),
                     safe_get_full_optimizer_state(param, "exp_avg_sq").flatten().tolist()]
    return out


def train(engine, first_step: int, steps: int, rank: int, dp: int) -> None:
    """``steps`` optimizer steps on global batches that depend only on the step number."""
    for step in range(first_step, first_step + steps):
        gen = torch.Generator().manual_seed(1000 + step)
        data = torch.randn(GLOBAL, 24, generator=gen)
        mine = data[rank * GLOBAL // dp:(rank + 1) * GLOBAL // dp]
        for micro in mine.split(MICRO):
            loss = engine(micro.to(torch.bfloat16)).float().pow(2).mean()
            engine.backward(loss)
            engine.step()


def main() -> None:
    phase, directory = sys.argv[1], Path(sys.argv[2])
    rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    # As the trainer does: its own gloo process group, and no DeepSpeed shm op (which would
    # be compiled on first use on CPU).
    quiet_deepspeed(cuda=False)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=os.environ["SLURM_LOCALID"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    config = load_config(REPO / "pretrain" / "configs" / "lev_1b2.yaml",
                         [f"train.micro_batch_size={MICRO}", f"train.global_batch_size={GLOBAL}"])
    ds = deepspeed_config(config, dp_size=world)
    torch.manual_seed(0)
    # Odd sizes: the flat partitions need padding, which a wrong re-split would misplace.
    model = torch.nn.Sequential(torch.nn.Linear(24, 37), torch.nn.Tanh(),
                                torch.nn.Linear(37, 11)).to(torch.bfloat16)
    engine, *_ = deepspeed.initialize(model=model, config=ds, model_parameters=model.parameters(),
                                      optimizer=AdamW(model.parameters(), lr=1e-2),
                                      dist_init_required=False)
    report = {"dp": world, "zero_stage": engine.zero_optimization_stage(),
              "optimizer": type(engine.optimizer).__name__, "bf16": engine.bfloat16_enabled()}
    ckpt = directory / "ckpt"
    if phase == "save":
        train(engine, 0, 3, rank, world)
        engine.save_checkpoint(str(ckpt), tag="step3")
        saved = state(engine)
        train(engine, 3, 2, rank, world)
        report.update(saved=saved, after=state(engine))
    else:
        enable_elastic_zero_resume(engine)  # what the trainer does when the DP size changed
        engine.load_checkpoint(str(ckpt), tag="step3")
        loaded = state(engine)
        train(engine, 3, 2, rank, world)
        report.update(loaded=loaded, after=state(engine))
    if rank == 0:
        (directory / f"{phase}.json").write_text(json.dumps(report))
    dist.barrier()


if __name__ == "__main__":
    main()
