"""Report the global gradient norm under ZeRO-0 (DeepSpeed computes it, then drops it).

Under ZeRO-0 with fp32, ``DeepSpeedEngine._take_model_step`` clips through
``clip_fp32_gradients``, which calls ``deepspeed.runtime.utils.clip_grad_norm_`` and
discards the norm it returns; ``get_global_grad_norm`` then reads
``optimizer._global_grad_norm``, which torch's AdamW does not have: the norm is ``None``
on every step. This wraps ``clip_fp32_gradients`` on *one engine instance* to keep the
norm in ``engine._global_grad_norm``, where ``get_global_grad_norm`` finds it.
ZeRO 1-3 report their norm already.
"""

from __future__ import annotations

import types

__all__ = ["report_zero0_grad_norm"]


def _clip_and_keep_norm(self) -> None:
    from deepspeed.runtime.utils import clip_grad_norm_

    norm = clip_grad_norm_(parameters=self.module.parameters(),
                           max_norm=self.gradient_clipping(), mpu=self.mpu)
    self._global_grad_norm = float(norm)


def report_zero0_grad_norm(engine) -> None:
    """Make ``engine.get_global_grad_norm()`` the pre-clipping norm under ZeRO-0."""
    engine.clip_fp32_gradients = types.MethodType(_clip_and_keep_norm, engine)
