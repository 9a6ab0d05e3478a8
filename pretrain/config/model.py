"""The model's sections: the backbone (``model``), LEV (``lev``), tensor parallelism (``parallel``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pretrain.config.errors import ConfigError, divisors

__all__ = ["EMBEDDINGS", "LEV_AGGREGATIONS", "LEVConfig", "ModelConfig", "ParallelConfig"]

EMBEDDINGS = ("lev", "tied", "untied")
LEV_AGGREGATIONS = ("linear", "mlp")


@dataclass(kw_only=True, slots=True)
class ModelConfig:
    """LLaMA-style megatron-core GPT backbone (RMSNorm, SwiGLU, RoPE, no biases)."""

    embedding: Literal["lev", "tied", "untied"] = "lev"
    """Input embedding: ``lev`` (LEV + untied head), ``tied`` (one shared V x d table)
    or ``untied`` (full input table + separate head)."""
    num_layers: int = 22
    """Transformer layers."""
    hidden_size: int = 2048
    """Model width ``d``."""
    num_attention_heads: int = 16
    """Attention heads; must be divisible by ``parallel.tensor_parallel``."""
    num_query_groups: int | None = None
    """Grouped-query attention groups (``None``: multi-head attention)."""
    ffn_hidden_size: int = 5632
    """SwiGLU inner width."""
    vocab_size: int = 50304
    """Padded vocabulary; >= the tokenizer's and divisible by ``parallel.tensor_parallel``."""
    seq_length: int = 512
    """Tokens per training sample (the shards' ``seq_length``)."""
    init_method_std: float = 0.02
    """Std of the normal init of the backbone and the embedding scale LEV matches."""
    rotary_base: int = 10000
    """RoPE base."""
    norm_epsilon: float = 1e-5
    """RMSNorm epsilon."""
    layer_spec: Literal["auto", "local", "transformer-engine"] = "auto"
    """Transformer layer modules: ``auto`` (Transformer Engine on a CUDA host where it
    imports, else megatron-core's local modules), or one of them by name. The resolved
    spec is recorded in every checkpoint; a checkpoint loads only into the same spec."""

    def __post_init__(self) -> None:
        if self.layer_spec not in ("auto", "local", "transformer-engine"):
            raise ConfigError(f"model.layer_spec={self.layer_spec!r}; use auto, local or "
                              f"transformer-engine")
        if self.embedding not in EMBEDDINGS:
            raise ConfigError(f"model.embedding={self.embedding!r}; use one of {EMBEDDINGS}")
        for name in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size",
                     "vocab_size", "seq_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}={getattr(self, name)} must be >= 1")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"model.hidden_size={self.hidden_size} is not divisible by "
                f"model.num_attention_heads={self.num_attention_heads}; "
                f"use heads in {divisors(self.hidden_size)}"
            )
        if self.num_query_groups is not None and self.num_attention_heads % self.num_query_groups:
            raise ConfigError(
                f"model.num_query_groups={self.num_query_groups} does not divide "
                f"model.num_attention_heads={self.num_attention_heads}; use one of "
                f"{divisors(self.num_attention_heads)}"
            )


@dataclass(kw_only=True, slots=True)
class LEVConfig:
    """LEV hyper-parameters (LEV.md). Parameters: ``K*b*s + s*G*R + R*d`` (``aggregation=mlp``:
    ``R*h + h*d`` in place of ``R*d``; ``output_norm``: ``+ d``)."""

    num_coords: int = 2
    """Digits per token id ``K`` (base ``b = ceil(V ** (1/K))``)."""
    seed_dim: int = 16
    """Seed dimension ``s``."""
    grid_size: int = 16
    """Uniform B-spline knots ``G`` (>= 3)."""
    num_modes: int = 1024
    """Separable modes ``R``; split across tensor-parallel ranks."""
    share_codebooks: bool = False
    """One codebook for all digits plus a learned per-digit scale and offset."""
    knots: Literal["extended", "interior"] = "interior"
    """B-spline layout: ``interior`` (centres 0..1, spacing 1/(G-1); sums to < 1 within 1.5
    spacings of the ends) or ``extended`` (centres -h/2..1+h/2, spacing 1/(G-2): a partition
    of unity on [0, 1]). ``interior`` measured better (docs/LEV.md, design study)."""
    init_active_factors: int = 2
    """Random (non-constant) univariate factors per mode at init; the others start at 1."""
    seed_init_std: float = 1.5
    """Std of the seed before the sigmoid at init."""
    lr_mult: float = 30.0
    """Learning-rate multiplier for LEV's inner parameters (codebooks, spline factors,
    shared-codebook scales/offsets), which live at scale ~1 where a table lives at
    ``init_method_std``; the projection keeps the base lr. The schedule's shape is shared."""
    lr_mult_schedule: Literal["constant", "cosine"] = "constant"
    """``constant``: the multiplier holds for the whole run. ``cosine``: it decays from
    ``lr_mult`` to 1 after warm-up, following the lr schedule's cosine progress, so LEV
    learns fast early and at the backbone's rate by the end (the long-horizon study's hypothesis)."""
    output_norm: bool = False
    """RMS-normalise each token's LEV embedding and scale it by a learned per-channel gain
    (``d`` parameters, base lr) that starts at ``init_method_std``: every token enters the
    backbone at a tied table's init scale, whatever the magnitude of its modes (the
    long-horizon study's output-scale hypothesis). The projection keeps its weight decay (as measured): under
    the norm only its direction matters, so decay just shortens it, which enlarges Adam's
    relative step on it over training."""
    aggregation: Literal["linear", "mlp"] = "linear"
    """How the ``R`` modes reach the model width ``d``. ``linear``: one projection
    ``e = P @ mode`` (``R*d`` parameters), so the embeddings span at most ``R`` directions.
    ``mlp``: one hidden layer, ``e = P @ silu(W @ mode)`` with ``W`` ``h x R`` and ``P``
    ``d x h``, no biases (one reading of the paper's "aggregation layers"): ``R*h + h*d``
    parameters, ``h = aggregation_hidden``. The last step is still linear, so the
    embeddings span at most ``h`` directions: ``h > R`` is what lifts LEV's rank, ``h = R``
    adds the nonlinearity alone. Extra parameters over ``linear`` with the default ``h = R``:
    ``R^2``, 4,096 at tiny_lev.yaml (d=128, R=64: LEV 18,560 -> 22,656 with output_norm)
    and 1,048,576 at lev_1b2.yaml (d=2048, R=1024: +0.09 % of the model); with ``h = d`` (full rank):
    16,384 and 4,194,304 (+0.34 %).
    SiLU (the backbone's own nonlinearity; smooth, no dead units). Init: ``W ~ N(0, 1/R)``
    (unit-variance pre-activations) and ``P`` row-centred with std
    ``init_method_std / sqrt(h Var[silu(z)])``, so the embeddings start at the linear
    projection's scale (within a few % over the vocabulary) and LEV's init, and
    ``output_norm`` on top, hold as they are. ``W`` and ``P`` are ordinary dense matrices:
    base lr (not ``lr_mult``) and weight decay, like the linear projection. Tensor
    parallelism: ``W`` is split over the modes (as ``P`` is in ``linear``) and ``P`` over
    the hidden units; one extra all-reduce of the distinct ids' ``h`` pre-activations, and
    the output leaves the TP region as in ``linear`` (sequence parallelism included), so
    ``h`` must be divisible by ``parallel.tensor_parallel``."""
    aggregation_hidden: int | None = None
    """Hidden width ``h`` of ``aggregation=mlp`` (>= 2; ``None``: ``num_modes``). Only with
    ``aggregation=mlp``: a linear LEV has no hidden layer."""

    def __post_init__(self) -> None:
        for name, low in (("num_coords", 1), ("seed_dim", 1), ("grid_size", 3), ("num_modes", 1),
                          ("init_active_factors", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"lev.{name}={getattr(self, name)} must be >= {low}")
        if self.init_active_factors > self.seed_dim:
            raise ConfigError(
                f"lev.init_active_factors={self.init_active_factors} exceeds lev.seed_dim="
                f"{self.seed_dim}; use at most seed_dim")
        if self.aggregation not in LEV_AGGREGATIONS:
            raise ConfigError(f"lev.aggregation={self.aggregation!r}; use one of "
                              f"{list(LEV_AGGREGATIONS)}")
        if self.aggregation_hidden is not None and self.aggregation != "mlp":
            raise ConfigError(
                f"lev.aggregation_hidden={self.aggregation_hidden} applies only to "
                f"lev.aggregation=mlp; remove it or set lev.aggregation=mlp")
        if self.aggregation_hidden is not None and self.aggregation_hidden < 2:
            raise ConfigError(f"lev.aggregation_hidden={self.aggregation_hidden} must be >= 2 "
                              f"(or left unset for num_modes={self.num_modes})")
        if self.seed_init_std <= 0 or self.lr_mult <= 0:
            raise ConfigError(f"lev.seed_init_std={self.seed_init_std} and lev.lr_mult="
                              f"{self.lr_mult} must be > 0")


@dataclass(kw_only=True, slots=True)
class ParallelConfig:
    """Tensor parallelism; data parallelism is whatever the world size leaves."""

    tensor_parallel: int = 1
    """Tensor-parallel ranks (megatron-core ``tensor_model_parallel_size``)."""
    sequence_parallel: bool = False
    """Shard activations along the sequence between TP regions (needs tensor_parallel > 1)."""

    def __post_init__(self) -> None:
        if self.tensor_parallel < 1:
            raise ConfigError(f"parallel.tensor_parallel={self.tensor_parallel} must be >= 1")
        if self.sequence_parallel and self.tensor_parallel == 1:
            raise ConfigError(
                "parallel.sequence_parallel=true needs parallel.tensor_parallel > 1; "
                "set parallel.sequence_parallel=false or raise tensor_parallel"
            )
