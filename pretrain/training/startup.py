"""The block a run prints once at start: what it trains, on what, how, for how long.

Answers, before the first step: the resolved config (one line per section; the YAML is
``--print-config``), parameters per part, the TP x DP layout and batch arithmetic, the
layer spec, and the data (samples, tokens, and the epochs this run will read).
"""

from __future__ import annotations

from typing import Any

from pretrain.config import Config, config_to_dict
from pretrain.data.blend import describe_mixture, mixture_shares
from pretrain.training.model import ParamCounts

__all__ = ["startup_block"]


def _section_line(name: str, values: dict[str, Any]) -> str:
    flat: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict):
            flat += [f"{key}.{k}={v}" for k, v in value.items()]
        else:
            flat.append(f"{key}={value}")
    return f"  {name}: {' '.join(flat)}"


def startup_block(config: Config, *, counts: ParamCounts, world_size: int, dp_size: int,
                  accum_steps: int, launcher: str, layer_spec: str, train_data: Any,
                  val_data: Any, order: Any, start_step: int) -> str:
    """The lines (joined) of the start-up block; see the module docstring."""
    c, m, t = config, config.model, config.train
    head = "tied to the input table" if m.embedding == "tied" else f"{counts.output_head:,}"
    lines = [
        f"model: {m.embedding}, {counts.total:,} parameters = backbone {counts.backbone:,} + "
        f"input embedding {counts.input_embedding:,}"
        + (" (LEV)" if m.embedding == "lev" else "") + f" + output head {head}; "
        f"layer spec {layer_spec}",
        f"parallel: {world_size} rank(s) via {launcher} = TP {c.parallel.tensor_parallel} x "
        f"DP {dp_size}; ZeRO-{t.zero_stage}, {t.precision}, recompute {t.recompute}",
        f"batch: micro {t.micro_batch_size} x accumulation {accum_steps} x DP {dp_size} = "
        f"global {t.global_batch_size} samples = {t.global_batch_size * m.seq_length:,} "
        f"tokens per step; steps {start_step} -> {t.train_steps}",
    ]
    reads = (t.train_steps - start_step) * t.global_batch_size
    mixture = mixture_shares(train_data, order, t.train_steps * t.global_batch_size)
    val = f"{len(val_data):,} val samples" if val_data is not None else "no validation"
    if mixture:
        lines.append(f"data: mixture of {len(mixture)} sources, {len(train_data):,} train "
                     f"samples, {val}; by step {t.train_steps}: {describe_mixture(mixture)}")
    else:
        lines.append(f"data: {c.data.path}: {len(train_data):,} train samples "
                     f"({len(train_data) * m.seq_length:,} tokens), {val}; this run reads "
                     f"{reads:,} samples = {reads / max(len(train_data), 1):.3g} epochs")
    lines.append("config (--print-config for YAML):")
    lines += [_section_line(name, values) for name, values in config_to_dict(config).items()]
    return "\n".join(lines)
