"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pretrain.config import OptimizerConfig

__all__ = ["cosine_progress", "lr_at", "lr_factors", "lr_mult_at"]


def lr_at(step: int, opt: OptimizerConfig, train_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based).

    Warm-up reaches ``lr`` at step ``warmup_steps - 1`` (the first step already moves);
    cosine then decays to ``min_lr`` over ``decay_steps`` (default: the rest of the run)
    and stays there.
    """
    if step < opt.warmup_steps:
        return opt.lr * (step + 1) / opt.warmup_steps
    return opt.min_lr + (opt.lr - opt.min_lr) * cosine_progress(step, opt, train_steps)


def cosine_progress(step: int, opt: OptimizerConfig, train_steps: int) -> float:
    """The cosine factor of step ``step``: 1 up to the end of warm-up, 0 from the end of decay."""
    decay = (opt.decay_steps or train_steps) - opt.warmup_steps
    if step < opt.warmup_steps or decay <= 0:
        return 1.0
    progress = min(1.0, (step - opt.warmup_steps) / decay)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_mult_at(step: int, mult: float, schedule: str, opt: OptimizerConfig,
               train_steps: int) -> float:
    """A parameter group's learning-rate multiplier at ``step``: ``mult`` throughout
    (``constant``) or decaying from ``mult`` to 1 with the cosine factor (``cosine``)."""
    if schedule == "constant" or mult == 1.0:
        return mult
    return 1.0 + (mult - 1.0) * cosine_progress(step, opt, train_steps)


def lr_factors(optimizer: Any, opt: OptimizerConfig, lev_schedule: str,
               train_steps: int) -> list[Callable[[int], float]]:
    """One ``LambdaLR`` factor per parameter group: the schedule, times the group's
    multiplier at that step over its initial one (a group starts at ``opt.lr * mult``)."""
    def factor(mult: float) -> Callable[[int], float]:
        return lambda step: (lr_at(step, opt, train_steps) / opt.lr
                             * lr_mult_at(step, mult, lev_schedule, opt, train_steps) / mult)

    return [factor(group["lr"] / opt.lr) for group in optimizer.param_groups]
