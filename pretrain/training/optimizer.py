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
    marked ``no_weight_decay`` (LEV's multiplicative factors).

    A parameter's ``lr_mult`` attribute (LEV's ``lev.lr_mult``) puts it in a group whose
    learning rate is that multiple of ``opt.lr`` (and whose weight decay is divided by it,
    so the decay per step stays that of the base lr); the scheduler scales every group alike.
    The first group is always the plain decayed one, so ``param_groups[0]["lr"]`` is the
    schedule's value.
    """
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    for p in model.parameters():
        if p.requires_grad:
            exempt = p.dim() < 2 or getattr(p, "no_weight_decay", False)
            groups.setdefault((not exempt, float(getattr(p, "lr_mult", 1.0))), []).append(p)
    # torch's AdamW decays by lr * weight_decay per step; dividing by the multiplier keeps
    # the decay per step that of the base lr, so lr_mult speeds up learning, not shrinking.
    param_groups = [{"params": params, "weight_decay": opt.weight_decay / mult if decay else 0.0,
                     "lr": opt.lr * mult}
                    for (decay, mult), params in groups.items() if params or mult == 1.0]
    return AdamW(param_groups, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps)
