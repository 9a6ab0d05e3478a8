"""Generate text from a checkpoint or a Hugging Face export, streaming to the terminal.

``python -m pretrain.generate --checkpoint DIR --prompt "..." [--max-new-tokens 64]
[--temperature 0] [--top-p 1.0] [--seed 0]``

``DIR`` is an export (``config.json``: loaded by transformers, with a KV cache) or a
training checkpoint (a tag or a save_dir: the megatron-core model rebuilt as
``pretrain.evaluate`` does, under the same launchers, one process per TP rank; it
recomputes the whole context for every token, so export for long generations). Both
share one sampling loop: greedy at ``--temperature 0``, else softmax(logits / T)
restricted to the smallest set of tokens whose probability reaches ``--top-p``, drawn
with a ``torch.Generator`` seeded by ``--seed``. Generation stops at the tokenizer's EOD
or after ``--max-new-tokens``. Exit codes: 0 done, 2 bad input, 78 a checkpoint refused
because loading it could run code (docs/trust.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pretrain.runtime.logs import setup_logging

# torch (and pretrain.export.inference, which imports it) load inside the functions: importing
# torch takes seconds, which `--help` and a mistyped flag should not pay for.
if TYPE_CHECKING:
    import torch

__all__ = ["generate", "main", "next_token"]

log = logging.getLogger("pretrain.generate")


def next_token(logits: torch.Tensor, *, temperature: float, top_p: float,
               generator: torch.Generator) -> int:
    """One token id from next-token ``logits`` ``[V]`` (greedy when ``temperature == 0``)."""
    import torch

    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    order = torch.argsort(probs, descending=True)
    cumulative = torch.cumsum(probs[order], dim=0)
    keep = int((cumulative < top_p).sum()) + 1  # the smallest prefix reaching top_p
    kept = order[:keep]
    choice = torch.multinomial(probs[kept] / probs[kept].sum(), 1, generator=generator)
    return int(kept[choice])


def generate(step: Callable[[list[int]], torch.Tensor], prompt_ids: list[int], *,
             max_new_tokens: int, eod_id: int | None, temperature: float, top_p: float,
             seed: int, on_token: Callable[[list[int]], None] | None = None) -> list[int]:
    """New token ids after ``prompt_ids``; ``step(ids)`` returns the next-token logits."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids, new = list(prompt_ids), []
    for _ in range(max_new_tokens):
        token = next_token(step(ids), temperature=temperature, top_p=top_p,
                           generator=generator)
        ids.append(token)
        new.append(token)
        if on_token is not None:
            on_token(new)
        if token == eod_id:
            break
    return new


def _hf_stepper(path: Path):
    """(step, tokenizer encode, decode, eod id) of an export, with a KV cache."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # An export directory may come from someone else: no code from it (remote code, or a
    # pickled pytorch_model.bin), only the weights in safetensors.
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=False,
                                                 use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    state: dict = {"cache": None, "seen": 0}

    @torch.no_grad()
    def step(ids: list[int]) -> torch.Tensor:
        fresh = torch.tensor([ids[state["seen"]:]])
        out = model(fresh, cache=state["cache"], use_cache=True)  # transformers 5's name
        state["cache"], state["seen"] = out.cache, len(ids)
        return out.logits[0, -1].float()

    return step, tokenizer.encode, tokenizer.decode, tokenizer.eos_token_id


def _megatron_stepper(tag_dir: Path, tokenizer_override: str | None):
    """(step, encode, decode, eod id) of a training checkpoint (collective per step)."""
    import torch
    import torch.distributed as dist
    from tokenizers import Tokenizer

    from pretrain.export.hf import find_tokenizer, megatron_logits
    from pretrain.export.inference import (
        build_inference_engine,
        ensure_tensor_parallel,
        load_checkpoint_config,
    )
    from pretrain.runtime.distributed import init_distributed

    meta = json.loads((tag_dir / "meta.json").read_text())
    tok_path, record = find_tokenizer(meta, tokenizer_override)
    init_distributed(meta["config"]["parallel"]["tensor_parallel"], meta["config"]["train"]["seed"])
    config, meta = load_checkpoint_config(tag_dir, meta["config"]["data"]["path"], 1)
    ensure_tensor_parallel(config.parallel.tensor_parallel, config.train.seed)
    engine = build_inference_engine(config, meta, tag_dir)
    tokenizer = Tokenizer.from_file(str(tok_path))
    window = config.model.seq_length
    vocab = int(record["vocab_size"])

    def step(ids: list[int]) -> torch.Tensor:
        logits = megatron_logits(engine, torch.tensor([ids[-window:]]))[0, -1, :vocab]
        if dist.get_world_size() > 1:  # every rank continues with rank 0's token
            dist.broadcast(logits, src=0)
        return logits

    return (step, lambda text: tokenizer.encode(text).ids, tokenizer.decode,
            int(record["eod_id"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate text from a checkpoint (tag or save_dir) or an HF export.")
    parser.add_argument("--checkpoint", required=True,
                        help="HF export dir (config.json), or a training tag / save_dir")
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="default 64")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0 (default): greedy; > 0: sample")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="nucleus sampling mass (default 1.0: all tokens)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--tokenizer", default=None,
                        help="training checkpoints: the tokenizer.json (default: recorded)")
    parser.add_argument("--print-ids", action="store_true",
                        help="also print the generated token ids as a last JSON line")
    args = parser.parse_args(argv)
    setup_logging()

    import torch.distributed as dist

    from data_prep.paths import PathOutsideError
    from megatron_patches.safe_load import UnsafeCheckpointError
    from pretrain.config import ConfigError
    from pretrain.export.inference import EvaluationError, resolve_checkpoint
    from pretrain.runtime.distributed import destroy_distributed

    try:
        if args.max_new_tokens < 1 or args.temperature < 0 or not 0 < args.top_p <= 1:
            raise EvaluationError("need --max-new-tokens >= 1, --temperature >= 0 and "
                                  "0 < --top-p <= 1")
        path = Path(args.checkpoint)
        if (path / "config.json").is_file():
            step, encode, decode, eod = _hf_stepper(path)
        else:
            step, encode, decode, eod = _megatron_stepper(resolve_checkpoint(path),
                                                          args.tokenizer)
        prompt_ids = encode(args.prompt)
        if not prompt_ids:
            raise EvaluationError("--prompt encodes to no tokens")
        rank0 = not dist.is_initialized() or dist.get_rank() == 0
        printed = [0]

        def stream(new: list[int]) -> None:
            text = decode(new)
            if rank0 and len(text) > printed[0]:
                sys.stdout.write(text[printed[0]:])
                sys.stdout.flush()
                printed[0] = len(text)

        if rank0:
            sys.stdout.write(args.prompt)
        new = generate(step, prompt_ids, max_new_tokens=args.max_new_tokens, eod_id=eod,
                       temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                       on_token=stream)
        if rank0:
            sys.stdout.write("\n")
            if args.print_ids:
                print(json.dumps({"prompt_ids": prompt_ids, "ids": new}))
    except (UnsafeCheckpointError, PathOutsideError) as exc:
        log.error("%s: %s (exit 78)", type(exc).__name__, exc)
        return 78  # refused input: docs/trust.md
    except (EvaluationError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    finally:
        destroy_distributed()
    return 0

