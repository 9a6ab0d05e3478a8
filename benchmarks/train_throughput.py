"""Training throughput of a config on this hardware: tokens/s, model TFLOP/s, MFU.

    python benchmarks/train_throughput.py --config pretrain/configs/lev_1b2.yaml \
        [--steps 10 --warmup 3] [key=value ...]
    torchrun --nproc-per-node 8 benchmarks/train_throughput.py --config ...   # TP/DP

Builds exactly what pretrain.train builds (megatron-core GPT, DeepSpeed engine, AdamW,
the config's precision/ZeRO/recompute, via pretrain.training.trainer.build_engine) and times full optimizer steps on Zipf-distributed
token ids (realistic distinct-id counts for LEV) after warm-up. No shards needed.
MFU uses --peak-tflops, else train.peak_tflops, else the dense bf16 peak of the exact GPU
model (pretrain/runtime/peaks.py: H100/H200 SXM, PCIe, NVL; no MFU for other devices).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

# numpy, torch, megatron-core and DeepSpeed load in the functions that use them: they take
# seconds to import, which `--help` should not pay for.
if TYPE_CHECKING:
    import numpy as np
    import torch

def peak_tflops(explicit: float) -> float:
    """``explicit``, else the dense bf16 peak of this exact GPU model, else 0 (no MFU)."""
    import torch

    from pretrain.runtime.peaks import dense_bf16_peak

    if explicit:
        return explicit
    if torch.cuda.is_available():
        return dense_bf16_peak(torch.cuda.get_device_name())[0] or 0.0
    return 0.0


def zipf_batch(batch: int, seq: int, vocab: int, rng: np.random.Generator) -> torch.Tensor:
    import torch

    ranks = rng.zipf(1.1, size=(batch, seq + 1))
    return torch.from_numpy((ranks - 1) % vocab)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=0.0)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from pretrain.config import load_config
    from pretrain.runtime.distributed import destroy_distributed, init_distributed
    from pretrain.runtime.metrics import model_flops_per_token
    from pretrain.training.model import build_model, count_parameters
    from pretrain.training.trainer import build_engine

    if not torch.cuda.is_available():
        args.overrides.append("train.precision=fp32")  # bf16 matmuls are emulated on CPU
    config = load_config(args.config, args.overrides)
    init_distributed(config.parallel.tensor_parallel, config.train.seed)
    dp = ps.get_data_parallel_world_size()
    # Counted on the meta device: after ZeRO-3 partitioning the module's tensors are empty.
    counts = count_parameters(build_model(config, meta=True), config.parallel.tensor_parallel)
    engine, _ = build_engine(config, dp)
    t, m = config.train, config.model
    accum = t.global_batch_size // (t.micro_batch_size * dp)
    rng = np.random.default_rng(ps.get_data_parallel_rank())
    positions = torch.arange(m.seq_length, device=engine.device).expand(t.micro_batch_size, -1)

    def step() -> None:
        for _ in range(accum):
            block = zipf_batch(t.micro_batch_size, m.seq_length, m.vocab_size, rng).to(engine.device)
            loss = engine(block[:, :-1], positions, None, labels=block[:, 1:]).float().mean()
            engine.backward(loss)
            engine.step()

    for _ in range(args.warmup):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    dist.barrier()
    elapsed = time.perf_counter() - start

    world = dist.get_world_size()
    tokens_per_sec = args.steps * t.global_batch_size * m.seq_length / elapsed
    tflops = tokens_per_sec * model_flops_per_token(config) / world / 1e12
    peak = peak_tflops(args.peak_tflops or t.peak_tflops)
    if dist.get_rank() == 0:
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        print(f"config {args.config} embedding={m.embedding} params={counts.total:,} "
              f"layers={m.num_layers} d={m.hidden_size} seq={m.seq_length} "
              f"micro-batch={t.micro_batch_size} global-batch={t.global_batch_size} "
              f"TP={config.parallel.tensor_parallel} DP={dp} precision={t.precision} "
              f"ZeRO-{t.zero_stage} on {world} x {device}")
        print(f"step time {elapsed / args.steps:.3f} s | {tokens_per_sec:,.0f} tokens/s | "
              f"{tflops:.2f} model TFLOP/s per device"
              + (f" | MFU {100 * tflops / peak:.1f} % of {peak:.0f}" if peak else ""))
    destroy_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
