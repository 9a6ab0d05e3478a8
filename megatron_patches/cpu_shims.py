"""CPU/gloo compatibility shims for megatron-core 0.16.1, applied only without CUDA.

megatron-core assumes a GPU in four ways that a CPU run (laptop, CI, gloo) reaches.
Each shim replaces exactly one of them and says why; nothing else is patched. Every
shimmed call would otherwise raise "Torch not compiled with CUDA enabled", so the shims
change no behaviour that works: on a CUDA host :func:`apply_cpu_shims` does nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator

import torch
from megatron.core.fusions import fused_softmax
from megatron.core.tensor_parallel import random as mcore_random

__all__ = ["CpuRNGStatesTracker", "apply_cpu_shims"]

log = logging.getLogger(__name__)
_APPLIED: list[str] = []


class CpuRNGStatesTracker(mcore_random.CudaRNGStatesTracker):
    """megatron's named RNG-state tracker, keeping torch's *CPU* generator states.

    Why: ``CudaRNGStatesTracker.add``/``fork`` read and write ``torch.cuda`` RNG states,
    which do not exist without CUDA; dropout inside TP regions forks the tracker.
    """

    def add(self, name: str, seed: int) -> None:
        """Register a named state seeded with ``seed`` (seeds and names must be new)."""
        self._is_initialized = True
        if seed in self.seeds_:
            raise ValueError(f"RNG seed {seed} already registered")
        if name in self.states_:
            raise ValueError(f"RNG state {name!r} already registered")
        self.seeds_.add(seed)
        self.states_[name] = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def fork(self, name: str = mcore_random._MODEL_PARALLEL_RNG_TRACKER_NAME) -> Iterator[None]:
        """Run the body with the CPU generator switched to state ``name``."""
        if name not in self.states_:
            raise KeyError(f"RNG state {name!r} was never added")
        outer = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(outer)


def _cpu_current_device() -> torch.device:
    """Stand-in for ``torch.cuda.current_device()`` on a host without CUDA.

    Why: megatron-core allocates buffers with ``device=torch.cuda.current_device()``
    (global memory buffer, RoPE frequencies, sequence-parallel gathers and
    reduce-scatters, their backward passes); naming the CPU makes those allocations land
    where the tensors live.
    """
    return torch.device("cpu")


def _no_cuda_rng_state(*_args, **_kwargs) -> None:
    """Stand-in for megatron's ``_get_cuda_rng_state`` / ``_set_cuda_rng_state``.

    Why: activation recomputation (``tensor_parallel.checkpoint``) saves and restores the
    CUDA generator next to the CPU one and the tracker's; without CUDA there is no such
    generator, and the CPU state and the (CPU) tracker states are still saved/restored.
    """
    return None


@functools.lru_cache
def _cpu_default_causal_mask(sq: int) -> torch.Tensor:
    """``get_default_causal_mask`` on the CPU.

    Why: the original builds the mask with the literal ``device="cuda"``.
    """
    return torch.triu(torch.ones(sq, sq), diagonal=1).bool()


def apply_cpu_shims() -> list[str]:
    """Install the shims when CUDA is absent; idempotent. Returns what was applied."""
    if torch.cuda.is_available() or _APPLIED:
        return list(_APPLIED)
    torch.cuda.current_device = _cpu_current_device
    _APPLIED.append("torch.cuda.current_device() -> cpu")
    mcore_random._get_cuda_rng_state = _no_cuda_rng_state
    mcore_random._set_cuda_rng_state = _no_cuda_rng_state
    _APPLIED.append("no CUDA generator state in recomputation checkpoints")
    fused_softmax.get_default_causal_mask = _cpu_default_causal_mask
    _APPLIED.append("fused_softmax.get_default_causal_mask on cpu")
    # Installing the tracker marks megatron's lazy initialiser as done, so
    # model_parallel_cuda_manual_seed() (whose torch.cuda.manual_seed is a harmless
    # no-op without CUDA) resets and fills *this* tracker.
    mcore_random._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
    mcore_random._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
    _APPLIED.append("CudaRNGStatesTracker -> CpuRNGStatesTracker")
    log.info("no CUDA: applied megatron-core CPU shims: %s", "; ".join(_APPLIED))
    return list(_APPLIED)
