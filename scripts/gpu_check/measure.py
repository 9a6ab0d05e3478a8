"""The ``throughput`` worker: real optimizer steps of one config, timed, in its own process.

Builds what pretrain.train builds (``pretrain.training.trainer.build_engine``: megatron-core
GPT in DeepSpeed, the config's precision and ZeRO stage) and times whole optimizer steps on
Zipf-distributed token ids, as benchmarks/train_throughput.py does, plus memory, the torch
that ran, and a deadline. An out-of-memory exits ``EXIT_OOM`` so that the orchestrator can
retry with a smaller micro-batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .plan import EXIT_OOM, REPO

__all__ = ["cmd_throughput"]


def _is_oom(exc: RuntimeError) -> bool:
    import torch

    text = str(exc)
    return (isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower()
            or "ALLOC_FAILED" in text)  # cuBLAS failing to allocate its workspace


def cmd_throughput(args: argparse.Namespace) -> int:
    """Time real optimizer steps of one config; write the result to ``args.json``."""
    import torch

    from pretrain.config import load_config

    config = load_config(args.config, args.overrides)
    t = config.train
    result: dict[str, Any] = {"config": args.config, "embedding": config.model.embedding,
                              "num_layers": config.model.num_layers,
                              "micro_batch_size": t.micro_batch_size,
                              "global_batch_size": t.global_batch_size,
                              "torch_version": torch.__version__}
    code = 0
    try:
        limit = os.environ.get("GPU_CHECK_FAULT_OOM_ABOVE_MICRO_BATCH")  # tests the retry
        if limit and t.micro_batch_size > int(limit):
            raise torch.OutOfMemoryError(
                f"fault injection: micro-batch {t.micro_batch_size} > "
                f"GPU_CHECK_FAULT_OOM_ABOVE_MICRO_BATCH={limit}")
        result.update(_measure(config, args))
    except RuntimeError as exc:
        if not _is_oom(exc):
            raise
        result.update(oom=True, error=str(exc).splitlines()[0])
        code = EXIT_OOM
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return code


def _measure(config, args: argparse.Namespace) -> dict[str, Any]:
    """The timing itself: warm-up steps, then timed steps until ``args.deadline``."""
    import resource

    import numpy as np
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_throughput import zipf_batch

    from pretrain.runtime.distributed import destroy_distributed, init_distributed
    from pretrain.runtime.metrics import model_flops_per_token
    from pretrain.training.model import build_model, count_parameters, layer_spec
    from pretrain.training.trainer import build_engine

    start = time.monotonic()
    cuda = torch.cuda.is_available()
    init_distributed(config.parallel.tensor_parallel, config.train.seed)
    try:
        dp = ps.get_data_parallel_world_size()
        counts = count_parameters(build_model(config, meta=True), config.parallel.tensor_parallel)
        engine, _ = build_engine(config, dp)
        build_s = time.monotonic() - start
        t, m = config.train, config.model
        accum = t.global_batch_size // (t.micro_batch_size * dp)
        rng = np.random.default_rng(ps.get_data_parallel_rank())
        positions = torch.arange(m.seq_length, device=engine.device).expand(t.micro_batch_size, -1)

        def step() -> float:
            began = time.perf_counter()
            for _ in range(accum):
                block = zipf_batch(t.micro_batch_size, m.seq_length, m.vocab_size, rng)
                block = block.to(engine.device)
                loss = engine(block[:, :-1], positions, None, labels=block[:, 1:]).float().mean()
                engine.backward(loss)
                engine.step()  # DeepSpeed steps the optimizer at the accumulation boundary
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - began

        warmup = [step() for _ in range(args.warmup)]
        times: list[float] = []
        while len(times) < args.steps:
            if times and args.deadline - time.time() < 1.5 * max(times):
                break  # the next step might not fit: report what was timed
            times.append(step())
        elapsed = sum(times)
        world = dist.get_world_size()
        tokens_per_s = len(times) * t.global_batch_size * m.seq_length / elapsed
        flops_per_token = model_flops_per_token(config)
        out: dict[str, Any] = {
            "layer_spec": layer_spec(config)[1], "precision": t.precision,
            "param_dtype": str(next(engine.module.parameters()).dtype),
            "optimizer": type(engine.optimizer).__name__,
            "zero_stage": t.zero_stage, "params": counts.total,
            "seq_length": m.seq_length, "accumulation_steps": accum, "world_size": world,
            "device": torch.cuda.get_device_name() if cuda else "CPU",
            "backend": dist.get_backend(), "build_s": round(build_s, 2),
            "warmup_step_s": [round(s, 4) for s in warmup],
            "step_times_s": [round(s, 4) for s in times], "timed_steps": len(times),
            "step_time_s": elapsed / len(times), "tokens_per_s": tokens_per_s,
            "model_flops_per_token": flops_per_token,
            "model_tflops_per_device": tokens_per_s * flops_per_token / world / 1e12,
            "peak_host_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        if cuda:
            out.update(peak_memory_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
                       peak_memory_reserved_gib=torch.cuda.max_memory_reserved() / 2**30,
                       device_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30)
        return out
    finally:
        destroy_distributed()
