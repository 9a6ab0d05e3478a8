"""Parameter counts of lev / tied / untied on one backbone, built on the meta device.

    python -m pretrain.params --config pretrain/configs/lev_1b2.yaml [key=value ...]

Nothing is allocated or initialised, so the 1.2B shapes count in seconds on a laptop.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from pretrain.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from pretrain.training.model import ParamCounts

__all__ = ["count_all", "isoparametric_ffn", "main", "relative_size"]


def count_all(config: Config) -> dict[str, ParamCounts]:
    """Global parameter counts for each embedding kind on ``config``'s backbone."""
    # Imported here, not at the top: megatron-core and torch take seconds to import and
    # warn about missing Apex / Transformer Engine, which `--help` should not pay for.
    from pretrain.runtime.distributed import destroy_distributed, init_distributed
    from pretrain.training.model import build_model, count_parameters

    # Counts are global, so a single rank (TP=1) gives them for any TP size.
    single = replace(config, parallel=replace(config.parallel, tensor_parallel=1,
                                              sequence_parallel=False))
    init_distributed(tensor_parallel=1, seed=single.train.seed)
    try:
        return {
            kind: count_parameters(build_model(
                replace(single, model=replace(single.model, embedding=kind)), meta=True))
            for kind in ("lev", "tied", "untied")
        }
    finally:
        destroy_distributed()


def isoparametric_ffn(config: Config, counts: dict[str, ParamCounts] | None = None) -> int:
    """``model.ffn_hidden_size`` that gives the tied model LEV's total parameter count.

    The isoparametric baseline of the paper's v1: the tied model widened (SwiGLU FFN)
    until it has as many parameters as LEV + its untied head, so a LEV gain cannot be
    bought with parameters. Each FFN unit adds ``3 * d`` per layer (gate, up, down, no
    biases); the width is rounded to the nearest multiple of ``parallel.tensor_parallel``.
    """
    counts = counts or count_all(config)
    m, tp = config.model, config.parallel.tensor_parallel
    extra = counts["lev"].total - counts["tied"].total
    per_unit = 3 * m.hidden_size * m.num_layers
    return max(tp, round((m.ffn_hidden_size + extra / per_unit) / tp) * tp)


def relative_size(config: Config, counts: dict[str, ParamCounts]) -> dict[str, float]:
    """LEV's size against what it replaces, in the readings the long-horizon study compares across scales:
    LEV parameters / the tied table's, ``num_modes`` / vocab, LEV parameters per vocabulary
    entry, and the total overhead over tied."""
    lev, table = counts["lev"].lev, counts["tied"].input_embedding
    vocab = config.model.vocab_size
    return {"lev_over_table": lev / table, "modes_over_vocab": config.lev.num_modes / vocab,
            "lev_params_per_id": lev / vocab,
            "overhead_over_tied": counts["lev"].total / counts["tied"].total - 1}


def format_relative_size(size: dict[str, float]) -> str:
    """The line ``main`` prints under the table."""
    return (f"LEV relative size: {100 * size['lev_over_table']:.2f} % of the tied table, "
            f"num_modes/vocab {100 * size['modes_over_vocab']:.2f} %, "
            f"{size['lev_params_per_id']:.1f} LEV parameters per vocabulary entry")


def format_table(counts: dict[str, ParamCounts]) -> str:
    """The table ``main`` prints: one row per embedding kind, then LEV's overhead."""
    rows = [f"{'embedding':<10}{'total':>16}{'backbone':>16}{'input emb':>14}"
            f"{'output head':>14}{'LEV':>12}"]
    for kind, c in counts.items():
        rows.append(f"{kind:<10}{c.total:>16,}{c.backbone:>16,}{c.input_embedding:>14,}"
                    f"{c.output_head:>14,}{c.lev:>12,}")
    tied = counts["tied"].total
    for kind in ("lev", "untied"):
        rows.append(f"{kind} overhead over tied: {100 * (counts[kind].total - tied) / tied:+.3f} %")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML config (pretrain/configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="section.field=value overrides")
    parser.add_argument("--isoparametric", action="store_true",
                        help="also print the tied model's model.ffn_hidden_size that matches "
                             "LEV's total parameter count (the isoparametric baseline)")
    args = parser.parse_args(argv)
    from megatron_patches.quiet import quiet_megatron_import

    quiet_megatron_import()  # before count_all imports megatron-core
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"ConfigError: {exc}", file=sys.stderr)
        return 2
    counts = count_all(config)
    print(format_table(counts))
    print(format_relative_size(relative_size(config, counts)))
    if args.isoparametric:
        ffn = isoparametric_ffn(config, counts)
        widened = count_all(replace(config, model=replace(config.model, ffn_hidden_size=ffn)))
        tied, lev = widened["tied"].total, counts["lev"].total
        print(f"isoparametric tied: model.embedding=tied model.ffn_hidden_size={ffn} -> "
              f"{tied:,} parameters ({100 * (tied - lev) / lev:+.3f} % vs lev)")
    return 0

