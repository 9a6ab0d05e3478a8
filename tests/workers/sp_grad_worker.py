"""torchrun worker: the sequence-parallel gradient hook sums partial grads over TP.

Usage: torchrun --nproc-per-node 2 sp_grad_worker.py OUT.pt
Each rank's marked parameter gets a rank-dependent partial gradient (its "sequence slice");
after backward every rank must hold the sum; an unmarked parameter keeps its own gradient.
"""

import os
import sys

import torch
from megatron.core import parallel_state

from pretrain.runtime.distributed import destroy_distributed, init_distributed
from pretrain.training.model import sum_sequence_parallel_grads

init_distributed(tensor_parallel=int(os.environ["WORLD_SIZE"]), seed=0)
rank = parallel_state.get_tensor_model_parallel_rank()
model = torch.nn.Module()
model.norm = torch.nn.Parameter(torch.ones(4))
model.norm.sequence_parallel = True
model.other = torch.nn.Parameter(torch.ones(4))
hooked = sum_sequence_parallel_grads(model, parallel_state.get_tensor_model_parallel_group())
x = torch.full((4,), float(rank + 1))  # rank r's slice contributes (r + 1)
(model.norm * x).sum().add((model.other * x).sum()).backward()
if rank == 0:
    torch.save({"hooked": hooked, "norm": model.norm.grad, "other": model.other.grad}, sys.argv[1])
destroy_distributed()
