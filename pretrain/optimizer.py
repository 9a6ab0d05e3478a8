"""AdamW with decoupled weight decay on matrices only, shaped for DeepSpeed ZeRO."""

from __future__ import annotations

from typing import Any

import torch

from pretrain.config import OptimizerConfig

__all__ = ["AdamW", "build_optimizer"]


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` that also keeps its step count in every param group.

    Why: DeepSpeed's elastic ZeRO-1/2 checkpoint (which re-splits optimizer state when
    the data-parallel size changes) reads the step from ``param_groups[0]["step"]``,
    where DeepSpeed's own Adam keeps it; torch keeps it per parameter only.
    """

    def __init__(self, params, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        for group in self.param_groups:
            group.setdefault("step", 0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            group["step"] += 1
        return loss


def build_optimizer(model: torch.nn.Module, opt: OptimizerConfig) -> AdamW:
    """AdamW decaying matrices; never norms, biases, other 1-D parameters, or parameters
    marked ``no_weight_decay`` (LEV's multiplicative factors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            exempt = p.dim() < 2 or getattr(p, "no_weight_decay", False)
            (no_decay if exempt else decay).append(p)
    groups = [{"params": decay, "weight_decay": opt.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return AdamW(groups, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps)
