"""torchrun worker: LEVEmbedding under TP, saving forward output and gathered gradients.

Usage: torchrun --nproc-per-node N lev_tp_worker.py OUT.pt MODE
MODE: plain, or ``+``-joined options of sequence_parallel, output_norm and mlp (the MLP
aggregation of ``lev_cases.MLP``).
The upstream gradient is a fixed function of a seed, so any TP size sees the same loss.
"""

import os
import sys
import types

import torch
import torch.distributed as dist
from megatron.core import parallel_state

from pretrain.export.hf import materialise_input_table
from pretrain.runtime.distributed import destroy_distributed, init_distributed
from pretrain.training.model import sum_sequence_parallel_grads
from tests.workers.lev_cases import MLP, TP_CASE, VOCAB, build_lev, upstream_grad

out_path, mode = sys.argv[1], sys.argv[2]
sequence_parallel = "sequence_parallel" in mode.split("+")
output_norm = "output_norm" in mode.split("+")
aggregation = MLP if "mlp" in mode.split("+") else {}
layout = init_distributed(tensor_parallel=int(os.environ["WORLD_SIZE"]), seed=0)
group = parallel_state.get_tensor_model_parallel_group()
tp, rank = group.size(), group.rank()

lev = build_lev(tp_group=group, reduce_scatter=sequence_parallel, output_norm=output_norm,
                **aggregation)
if sequence_parallel:
    # What the model builder does: sum the replicated gain's partial gradients over TP.
    sum_sequence_parallel_grads(lev, group)
ids = TP_CASE["ids"]
out = lev(ids)
grad = upstream_grad(ids.shape)  # [b, s, d]
if sequence_parallel:
    chunk = ids.shape[1] // tp
    grad = grad.transpose(0, 1)[rank * chunk:(rank + 1) * chunk]
out.backward(grad)


def gather(t: torch.Tensor, dim: int) -> torch.Tensor:
    parts = [torch.empty_like(t) for _ in range(tp)]
    dist.all_gather(parts, t.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


full_out = gather(out, 0).transpose(0, 1) if sequence_parallel else out
result = {
    "out": full_out.detach(),
    "codebooks": lev.codebooks.grad,
    "mode_weights": gather(lev.mode_weights.grad, 2),
    "projection": gather(lev.projection.grad, 1),
    "weights": {"mode_weights": gather(lev.mode_weights.detach(), 2),
                "projection": gather(lev.projection.detach(), 1)},
}
if aggregation:  # W [h, R/tp]: split over the modes, like the linear projection
    result["aggregation_in"] = gather(lev.aggregation_in.grad, 1)
    result["weights"]["aggregation_in"] = gather(lev.aggregation_in.detach(), 1)
if sequence_parallel:  # the export's table: every id's row on every rank, SP or not
    holder = types.SimpleNamespace(embedding=types.SimpleNamespace(word_embeddings=lev),
                                   parameters=lev.parameters)
    result["table"] = gather(materialise_input_table(holder, VOCAB, chunk=500)[None], 0)
if output_norm:
    # Replicated: every rank must hold the same full gradient (nothing syncs it later).
    result["output_gain"] = gather(lev.output_gain.grad[None], 0)
if layout.rank == 0:
    torch.save(result, out_path)
destroy_distributed()
