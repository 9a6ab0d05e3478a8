"""torchrun worker: LEVEmbedding under TP, saving forward output and gathered gradients.

Usage: torchrun --nproc-per-node N lev_tp_worker.py OUT.pt {plain|sequence_parallel|output_norm}
The upstream gradient is a fixed function of a seed, so any TP size sees the same loss.
"""

import os
import sys

import torch
import torch.distributed as dist
from megatron.core import parallel_state

from pretrain.runtime.distributed import destroy_distributed, init_distributed
from tests.workers.lev_cases import TP_CASE, build_lev, upstream_grad

out_path, mode = sys.argv[1], sys.argv[2]
sequence_parallel = mode == "sequence_parallel"
layout = init_distributed(tensor_parallel=int(os.environ["WORLD_SIZE"]), seed=0)
group = parallel_state.get_tensor_model_parallel_group()
tp, rank = group.size(), group.rank()

output_norm = mode == "output_norm"
lev = build_lev(tp_group=group, reduce_scatter=sequence_parallel, output_norm=output_norm)
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
if output_norm:
    result["output_gain"] = lev.output_gain.grad  # replicated: every rank holds the full grad
if layout.rank == 0:
    torch.save(result, out_path)
destroy_distributed()
