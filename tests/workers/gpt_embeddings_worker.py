"""torchrun worker: megatron-core GPT with lev / tied / untied embeddings, one step each.

Usage: torchrun --nproc-per-node N gpt_embeddings_worker.py OUT.pt
Saves, per embedding kind (and for LEV with activation recomputation), the loss, the
gradients and whether the output head shares the input table's tensor. TP = world size.
"""

import os
import sys

import torch
import torch.distributed as dist

from pretrain.config import load_config
from pretrain.runtime.distributed import destroy_distributed, init_distributed
from pretrain.training.model import build_model

TINY = ["model.num_layers=2", "model.hidden_size=64", "model.num_attention_heads=4",
        "model.ffn_hidden_size=128", "model.vocab_size=512", "model.seq_length=16",
        "lev.num_modes=32", "lev.seed_dim=4", "lev.grid_size=6", "train.precision=fp32"]

out_path = sys.argv[1]
tp = int(os.environ["WORLD_SIZE"])
layout = init_distributed(tensor_parallel=tp, seed=1234)
ids = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(0))
positions = torch.arange(16).expand(2, 16)
results = {}
RUNS = {"lev": ("lev", "none"), "tied": ("tied", "none"), "untied": ("untied", "none"),
        "lev+selective": ("lev", "selective"), "lev+full": ("lev", "full")}
for name, (kind, recompute) in RUNS.items():
    torch.manual_seed(1234)  # identical backbone init for every kind
    config = load_config(None, [*TINY, f"model.embedding={kind}", f"train.recompute={recompute}",
                                f"parallel.tensor_parallel={tp}"])
    model = build_model(config)
    loss = model(ids, positions, None, labels=ids).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    table = model.embedding.word_embeddings
    head = model.output_layer.weight
    used = model.shared_embedding_or_output_weight() if head is None else head
    results[name] = {
        "loss": loss.item(),
        "grads": [g.clone() for g in grads],
        "all_grads_finite": all(g is not None and torch.isfinite(g).all() for g in grads),
        "head_is_input_table": getattr(table, "weight", None) is used,
        "head_param_count": sum(p.numel() for n, p in model.named_parameters()
                                if n.startswith("output_layer")),
        "table_class": type(table).__name__,
    }
    dist.barrier()
if layout.rank == 0:
    torch.save(results, out_path)
destroy_distributed()
