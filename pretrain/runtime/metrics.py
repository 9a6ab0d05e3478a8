"""Training metrics: model FLOPs, one console line per interval, metrics.jsonl, TensorBoard."""

from __future__ import annotations

import json
import logging
import math
import os
import resource
from pathlib import Path
from typing import Any

import torch

from pretrain.config import Config

__all__ = ["MEMORY_KIND", "MetricsWriter", "memory_gib", "model_flops_per_token", "perplexity"]

log = logging.getLogger(__name__)


def perplexity(loss: float) -> float:
    """``exp(loss)``, capped below float overflow; NaN for a non-finite loss."""
    return math.exp(min(loss, 700.0)) if math.isfinite(loss) else float("nan")


#: What :func:`memory_gib` measures on this host (the log line's label).
MEMORY_KIND = "max-alloc" if torch.cuda.is_available() else "rss"


def memory_gib() -> float:
    """This rank's memory in GiB: the peak tensor allocation on CUDA (what decides an
    out-of-memory), the resident set size of the process on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB: the peak


def model_flops_per_token(config: Config) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), as Megatron counts them.

    Matmuls only: attention projections, SwiGLU MLP, attention scores and values
    (full ``s x s``, as Megatron-LM reports), the output head, and LEV's projection or
    aggregation MLP (an upper bound: LEV runs once per distinct id, not per token). Recomputation is not
    counted (model FLOPs, not hardware FLOPs).
    """
    m = config.model
    d, s, layers = m.hidden_size, m.seq_length, m.num_layers
    kv = d * (m.num_query_groups or m.num_attention_heads) // m.num_attention_heads
    per_layer = 2 * (d * (d + 2 * kv) + d * d + 3 * d * m.ffn_hidden_size) + 4 * s * d
    forward = layers * per_layer + 2 * d * m.vocab_size
    if m.embedding == "lev":
        lev = config.lev
        forward += 2 * lev.seed_dim * lev.grid_size * lev.num_modes
        if lev.aggregation == "mlp":
            hidden = lev.aggregation_hidden or lev.num_modes
            forward += 2 * (lev.num_modes * hidden + hidden * d)
        else:
            forward += 2 * lev.num_modes * d
    return 3.0 * forward


class MetricsWriter:
    """Writes each record to ``metrics.jsonl``, TensorBoard and, with ``train.wandb``
    enabled, Weights & Biases (rank 0 only)."""

    def __init__(self, save_dir: str | Path, enabled: bool, *, wandb: Any = None,
                 run_config: dict[str, Any] | None = None) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        if wandb is not None and wandb.enabled:
            from pretrain.runtime.wandb_sink import WandbSink

            self._wandb = WandbSink(wandb, save_dir, run_config or {})
        out = Path(save_dir)
        out.mkdir(parents=True, exist_ok=True)
        self._jsonl = (out / "metrics.jsonl").open("a", buffering=1)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is in requirements.txt; keep training without it
            log.warning("tensorboard is not importable; writing metrics.jsonl only")
        else:
            self._tb = SummaryWriter(log_dir=str(out / "tensorboard"))

    def write(self, record: dict[str, Any], prefix: str = "train") -> None:
        """Append ``record`` (must hold ``step``) as strict JSON (non-finite numbers become
        ``null``); finite numbers also go to TensorBoard."""
        if not self.enabled:
            return
        # Strict JSON: NaN/Infinity are not JSON (jq, pandas' strict readers reject them).
        strict = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in record.items()}
        self._jsonl.write(json.dumps(strict, allow_nan=False) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"{prefix}/{key}", value, record["step"])
        if self._wandb is not None:
            self._wandb.log(record, prefix)

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.close()
            self._wandb = None
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
