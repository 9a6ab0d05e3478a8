"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr``."""

from __future__ import annotations

import math

from pretrain.config import OptimizerConfig

__all__ = ["lr_at"]


def lr_at(step: int, opt: OptimizerConfig, train_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based).

    Warm-up reaches ``lr`` at step ``warmup_steps - 1`` (the first step already moves);
    cosine then decays to ``min_lr`` over ``decay_steps`` (default: the rest of the run)
    and stays there.
    """
    if step < opt.warmup_steps:
        return opt.lr * (step + 1) / opt.warmup_steps
    decay = (opt.decay_steps or train_steps) - opt.warmup_steps
    if decay <= 0:
        return opt.lr
    progress = min(1.0, (step - opt.warmup_steps) / decay)
    return opt.min_lr + 0.5 * (opt.lr - opt.min_lr) * (1.0 + math.cos(math.pi * progress))
