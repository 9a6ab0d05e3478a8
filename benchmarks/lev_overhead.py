"""Step-time overhead of LEV over the tied baseline: full-model forward + backward on CPU.

Builds two megatron-core GPTs with ``pretrain.training.model.build_model`` on a world of 1 (same
config, same seed, so the backbones are identical): ``embedding=lev`` (LEV input + untied
head) and ``embedding=tied`` (one shared V x d table). After warm-up it runs ``--rounds``
rounds, each one lev step then one tied step (the order alternates every round), so
machine noise from other processes lands on both. Prints the median step times and the
ratio lev / tied (target <= 1.05). fp32, no optimizer step (the same for both but for the
head; see benchmarks/README.md).

Token ids: a Zipf distribution over the vocabulary (p(rank r) ~ 1 / r**a, a = 1.0 by
default, ranks mapped to ids by a fixed random permutation). LEV's cost scales with the
number of *distinct* ids per micro-batch, and natural-language text is close to Zipf with
exponent ~1: uniform ids would overstate the distinct count, a constant batch understate
it. The distinct count per batch is printed.

    python benchmarks/lev_overhead.py [--rounds 20] [--threads 2] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_prep.cli import add_flag  # noqa: E402
from pretrain.config import Config, load_config  # noqa: E402

# torch and megatron-core load where they are used: they take seconds to import, which
# `--help` should not pay for.
if TYPE_CHECKING:
    import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shape = p.add_argument_group("proxy shape")
    shape.add_argument("--hidden", type=int, default=512, help="model width d (512)")
    shape.add_argument("--layers", type=int, default=4, help="transformer layers (4)")
    shape.add_argument("--heads", type=int, default=8, help="attention heads (8)")
    shape.add_argument("--ffn", type=int, default=1376, help="SwiGLU inner width (1376)")
    add_flag(shape, "--seq-length", deprecated=("--seq",), type=int, default=256,
             help="sequence length (256)")
    shape.add_argument("--micro-batch", type=int, default=8, help="samples per step (8)")
    add_flag(shape, "--vocab-size", deprecated=("--vocab",), type=int, default=32768,
             help="vocabulary V (32768)")
    lev = p.add_argument_group("LEV")
    lev.add_argument("--num-coords", type=int, default=2, help="K (2)")
    lev.add_argument("--seed-dim", type=int, default=16, help="s (16)")
    lev.add_argument("--grid-size", type=int, default=16, help="G (16)")
    lev.add_argument("--num-modes", type=int, default=1024, help="R (1024)")
    run = p.add_argument_group("run")
    run.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    run.add_argument("--warmup", type=int, default=3, help="untimed steps per model (3)")
    run.add_argument("--rounds", type=int, default=20, help="timed lev+tied rounds (20)")
    run.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of the ids (1.0)")
    run.add_argument("--seed", type=int, default=1234, help="model init and id sampling (1234)")
    run.add_argument("--profile", action="store_true",
                     help="also time LEVEmbedding forward/backward alone and print a "
                          "torch.profiler table of one LEV step")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace, embedding: str) -> Config:
    overrides = {
        "model.embedding": embedding, "model.num_layers": args.layers,
        "model.hidden_size": args.hidden, "model.num_attention_heads": args.heads,
        "model.ffn_hidden_size": args.ffn, "model.seq_length": args.seq_length,
        "model.vocab_size": args.vocab_size, "lev.num_coords": args.num_coords,
        "lev.seed_dim": args.seed_dim, "lev.grid_size": args.grid_size,
        "lev.num_modes": args.num_modes, "train.precision": "fp32",
        "train.micro_batch_size": args.micro_batch,
        "train.global_batch_size": args.micro_batch, "train.seed": args.seed,
    }
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


def zipf_batches(args: argparse.Namespace, count: int) -> list[torch.Tensor]:
    """``count`` id batches ``[micro_batch, seq + 1]`` drawn i.i.d. from Zipf(a) over V."""
    import torch

    gen = torch.Generator().manual_seed(args.seed)
    ranks = torch.arange(1, args.vocab_size + 1, dtype=torch.float64)
    probs = ranks.pow(-args.zipf)
    rank_to_id = torch.randperm(args.vocab_size, generator=gen)
    return [
        rank_to_id[torch.multinomial(probs, args.micro_batch * (args.seq_length + 1), replacement=True,
                                     generator=gen)].view(args.micro_batch, args.seq_length + 1)
        for _ in range(count)
    ]


def train_step(model: torch.nn.Module, batch: torch.Tensor, positions: torch.Tensor) -> float:
    """One forward + backward (next-token loss); returns its wall time in seconds."""
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    ids, labels = batch[:, :-1], batch[:, 1:]
    loss = model(ids, positions, None, labels=labels).mean()
    loss.backward()
    return time.perf_counter() - start


def profile_lev(model: torch.nn.Module, batches: list[torch.Tensor], positions: torch.Tensor,
                repeats: int = 10) -> None:
    """LEVEmbedding forward and backward alone, then a profiler table of one full step."""
    import torch

    lev = model.embedding.word_embeddings
    fwd, bwd = [], []
    for i in range(repeats):
        ids = batches[i % len(batches)][:, :-1]
        lev.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = lev(ids)
        t1 = time.perf_counter()
        out.sum().backward()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
    print(f"LEVEmbedding alone: forward {1e3 * statistics.median(fwd):.2f} ms, "
          f"backward {1e3 * statistics.median(bwd):.2f} ms (median of {repeats})")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train_step(model, batches[0], positions)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from pretrain.runtime.distributed import destroy_distributed, init_distributed
    from pretrain.training.model import build_model

    torch.set_num_threads(args.threads)
    configs = {kind: make_config(args, kind) for kind in ("lev", "tied")}
    init_distributed(tensor_parallel=1, seed=args.seed)
    try:
        models = {}
        for kind, config in configs.items():
            torch.manual_seed(args.seed)  # same backbone init for both
            models[kind] = build_model(config)
        params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
        batches = zipf_batches(args, 8)
        distinct = [b[:, :-1].unique().numel() for b in batches]
        positions = torch.arange(args.seq_length).unsqueeze(0).expand(args.micro_batch, -1)

        print(f"proxy shape: d={args.hidden} layers={args.layers} heads={args.heads} "
              f"ffn={args.ffn} seq={args.seq_length} micro_batch={args.micro_batch} V={args.vocab_size}; "
              f"LEV K={args.num_coords} s={args.seed_dim} G={args.grid_size} "
              f"R={args.num_modes}; fp32, {args.threads} threads, torch {torch.__version__}")
        print(f"params: lev {params['lev']:,}  tied {params['tied']:,}; ids Zipf(a={args.zipf}), "
              f"distinct ids per batch {min(distinct)}-{max(distinct)} of "
              f"{args.micro_batch * args.seq_length} tokens")

        for kind in ("lev", "tied"):
            for i in range(args.warmup):
                train_step(models[kind], batches[i % len(batches)], positions)
        times: dict[str, list[float]] = {"lev": [], "tied": []}
        for r in range(args.rounds):
            batch = batches[r % len(batches)]  # both models see the same ids each round
            for kind in (("lev", "tied") if r % 2 == 0 else ("tied", "lev")):
                times[kind].append(train_step(models[kind], batch, positions))

        med = {k: statistics.median(v) for k, v in times.items()}
        spread = {k: (min(v), max(v)) for k, v in times.items()}
        ratios = sorted(a / b for a, b in zip(times["lev"], times["tied"], strict=True))
        for kind in ("lev", "tied"):
            print(f"{kind:<5} median {1e3 * med[kind]:8.1f} ms/step  "
                  f"(min {1e3 * spread[kind][0]:.1f}, max {1e3 * spread[kind][1]:.1f}, "
                  f"{args.rounds} steps)")
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        ratio = med["lev"] / med["tied"]
        print(f"ratio lev/tied (median step times): {ratio:.3f}  "
              f"[per-round ratios: median {statistics.median(ratios):.3f}, "
              f"IQR {q1:.3f}-{q3:.3f}; min step times: "
              f"{spread['lev'][0] / spread['tied'][0]:.3f}]  "
              f"target <= 1.05: {'met' if ratio <= 1.05 else 'MISSED'}")
        if args.profile:
            profile_lev(models["lev"], batches, positions)
    finally:
        destroy_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
