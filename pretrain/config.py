"""The one configuration tree: dataclasses per section, loaded from YAML, dotted overrides.

``load_config("pretrain/configs/lev_1b2.yaml", ["train.micro_batch_size=4"])`` reads the
file (following ``base:`` to a parent file), applies ``section.field=value`` overrides
(values parsed as YAML), and validates everything once, up front, with messages that say
what to change. Every field carries its documentation; the config *is* the reference.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "LEVConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ParallelConfig",
    "TrainConfig",
    "WandbConfig",
    "WatchdogConfig",
    "check_world_size",
    "config_reference",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
]

log = logging.getLogger(__name__)

EMBEDDINGS = ("lev", "tied", "untied")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and the fix."""


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
                f"use heads in {_divisors(self.hidden_size)}"
            )
        if self.num_query_groups is not None and self.num_attention_heads % self.num_query_groups:
            raise ConfigError(
                f"model.num_query_groups={self.num_query_groups} does not divide "
                f"model.num_attention_heads={self.num_attention_heads}; use one of "
                f"{_divisors(self.num_attention_heads)}"
            )


@dataclass(kw_only=True, slots=True)
class LEVConfig:
    """LEV hyper-parameters (LEV.md). Parameters: ``K*b*s + s*G*R + R*d``."""

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
    learns fast early and at the backbone's rate by the end (issue 20's hypothesis)."""

    def __post_init__(self) -> None:
        for name, low in (("num_coords", 1), ("seed_dim", 1), ("grid_size", 3), ("num_modes", 1),
                          ("init_active_factors", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"lev.{name}={getattr(self, name)} must be >= {low}")
        if self.init_active_factors > self.seed_dim:
            raise ConfigError(
                f"lev.init_active_factors={self.init_active_factors} exceeds lev.seed_dim="
                f"{self.seed_dim}; use at most seed_dim")
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


@dataclass(kw_only=True, slots=True)
class DataConfig:
    """Shards written by ``data_prep/shard.py``."""

    path: str | list[Any] = ""
    """Shard directory (holds manifest.json and the *.wids.json lists), or a weighted
    mixture of several: ``"0.7 DIR_A 0.3 DIR_B"`` (Megatron's form), ``[0.7, DIR_A, 0.3,
    DIR_B]`` or ``[{path: DIR_A, weight: 0.7}, {path: DIR_B, weight: 0.3, name: code}]``
    (``pretrain/blend.py``)."""
    shuffle_seed: int = 1234
    """Seed of the per-epoch sample permutation (and of the mixture)."""

    def __post_init__(self) -> None:
        from pretrain.data_sources import parse_data_path  # it imports this module

        parse_data_path(self.path)  # a malformed mixture fails here, before any process


@dataclass(kw_only=True, slots=True)
class OptimizerConfig:
    """AdamW with linear warm-up and cosine decay."""

    lr: float = 3e-4
    """Peak learning rate."""
    min_lr: float = 3e-5
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int = 2000
    """Linear warm-up steps from 0 to ``lr``."""
    decay_steps: int | None = None
    """Cosine decay length (``None``: until ``train.train_steps``)."""
    weight_decay: float = 0.1
    """Decoupled weight decay (not applied to norms and 1-D parameters)."""
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    clip_grad: float = 1.0
    """Global gradient-norm clip (0 disables)."""

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ConfigError(f"optimizer.warmup_steps={self.warmup_steps} must be >= 0")
        if self.decay_steps is not None and self.decay_steps <= self.warmup_steps:
            raise ConfigError(
                f"optimizer.decay_steps={self.decay_steps} must exceed optimizer.warmup_steps="
                f"{self.warmup_steps} (or be null: decay until train.train_steps)")
        if self.clip_grad < 0 or self.eps <= 0 or self.weight_decay < 0:
            raise ConfigError("need optimizer.clip_grad >= 0 (0 disables), optimizer.eps > 0 "
                              "and optimizer.weight_decay >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"optimizer.beta1={self.beta1} and beta2={self.beta2} must be in [0, 1)")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(
                f"need 0 <= optimizer.min_lr <= optimizer.lr and lr > 0, got lr={self.lr}, "
                f"min_lr={self.min_lr}"
            )


@dataclass(kw_only=True, slots=True)
class WandbConfig:
    """Weights & Biases mirror of metrics.jsonl (``pretrain/wandb_sink.py``); off unless
    ``enabled``. The run id is kept in ``save_dir/wandb_run_id``, so a requeued or resumed
    run appends to the same W&B run."""

    enabled: bool = False
    """Mirror every metrics record and the resolved config to W&B (rank 0)."""
    project: str = "lev-pretrain"
    """W&B project."""
    entity: str | None = None
    """W&B team or user (``None``: your default entity)."""
    name: str | None = None
    """Run name (``None``: the save_dir's base name)."""
    mode: Literal["online", "offline"] = "online"
    """``offline`` writes under ``save_dir/wandb`` for a later ``wandb sync`` (clusters
    without internet access)."""


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """Batch sizes, length, precision, memory savings, logging."""

    seed: int = 1234
    """Seed of model init, dropout and everything random except the data order."""
    micro_batch_size: int = 8
    """Samples per rank per forward/backward."""
    global_batch_size: int = 512
    """Samples per optimizer step over all data-parallel ranks (accumulation fills it)."""
    train_steps: int = 100_000
    """Optimizer steps of the whole run."""
    precision: Literal["fp32", "bf16"] = "bf16"
    """``bf16`` on CUDA (fp32 master weights); ``fp32`` on CPU."""
    zero_stage: int = 1
    """DeepSpeed ZeRO stage 0-3."""
    recompute: Literal["none", "selective", "full"] = "none"
    """megatron-core activation recomputation."""
    log_interval: int = 10
    """Steps between console/metrics lines."""
    eval_interval: int = 1000
    """Steps between validation passes (0: never)."""
    eval_samples: int = 0
    """Validation samples per pass (0: the whole split); fewer than the split are a fixed
    pseudo-random subset drawn across all shards (``pretrain.sampler.val_subset_ids``),
    the same for every run on these shards, never the first ones."""
    exit_duration_mins: float = 0.0
    """Save and exit after this much wall time (0: no limit)."""
    max_skipped_steps: int = 10
    """Consecutive non-finite losses tolerated before the run stops with a diagnostic."""
    peak_tflops: float = 0.0
    """Per-device peak for MFU (e.g. 989 for H100 bf16 dense; 0: MFU not reported)."""
    log_sample_ids: bool = False
    """Also write each logged step's global sample ids to metrics.jsonl (audits data order)."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Weights & Biases (``train.wandb.enabled=true``)."""

    def __post_init__(self) -> None:
        if self.micro_batch_size < 1 or self.global_batch_size < 1:
            raise ConfigError("train.micro_batch_size and train.global_batch_size must be >= 1")
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigError(
                f"train.global_batch_size={self.global_batch_size} is not a multiple of "
                f"train.micro_batch_size={self.micro_batch_size}"
            )
        for name in ("train_steps", "log_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)} must be >= 1")
        for name in ("eval_interval", "eval_samples", "max_skipped_steps", "exit_duration_mins"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}={getattr(self, name)} must be >= 0 (0: off)")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"train.precision={self.precision!r}; use 'fp32' or 'bf16'")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError(f"train.zero_stage={self.zero_stage}; use 0, 1, 2 or 3")
        if self.precision == "bf16" and self.zero_stage == 0:
            # DeepSpeed has no fp32 gradient accumulation without ZeRO; Megatron and
            # torchtitan accumulate and reduce bf16 gradients in fp32, and so do we.
            raise ConfigError("train.precision=bf16 needs train.zero_stage >= 1 (DeepSpeed "
                              "accumulates ZeRO-0 bf16 gradients in bf16); use zero_stage=1")
        if self.recompute not in ("none", "selective", "full"):
            raise ConfigError(
                f"train.recompute={self.recompute!r}; use 'none', 'selective' or 'full'"
            )


@dataclass(kw_only=True, slots=True)
class CheckpointConfig:
    """Where and how often to save; how to resume."""

    save_dir: str = "runs/default"
    """Checkpoints, metrics.jsonl and TensorBoard files (a shared path on clusters)."""
    save_interval: int = 1000
    """Steps between checkpoints (0: only at the end and on signals)."""
    keep_last: int = 2
    """Checkpoints kept; older ones are deleted after a newer one is complete (never
    newer ones: those are moved to ``save_dir/abandoned/``)."""
    resume: str = "auto"
    """``auto`` (newest valid checkpoint in save_dir, else start fresh), ``none``, or a path."""
    force_resume: bool = False
    """Resume even if the model shape, data fingerprint or sample order changed."""
    overwrite: bool = False
    """Let ``resume=none`` start fresh in a save_dir holding checkpoints; they are moved
    to ``save_dir/abandoned/``, never deleted. Without it such a start is refused."""
    probe_timeout_s: float = 30.0
    """How long each rank waits to see the others' probe files in save_dir at start-up
    (proves it is one shared directory; NFS caches directory listings for seconds)."""

    def __post_init__(self) -> None:
        if self.probe_timeout_s <= 0:
            raise ConfigError(f"checkpoint.probe_timeout_s={self.probe_timeout_s} must be > 0")
        if self.save_interval < 0:
            raise ConfigError(f"checkpoint.save_interval={self.save_interval} must be >= 0 "
                              "(0: save only at the end and on signals)")
        if self.keep_last < 1:
            raise ConfigError(f"checkpoint.keep_last={self.keep_last} must be >= 1")
        if not self.save_dir:
            raise ConfigError("checkpoint.save_dir is empty; give a directory on shared storage")


@dataclass(kw_only=True, slots=True)
class WatchdogConfig:
    """Hang detection (``pretrain/watchdog.py``): a rank that spends longer than a section's
    timeout in it logs the lagging ranks and exits 77; 0 disables a section's timeout.
    Defaults are NVIDIA Resiliency Extension's / Megatron Bridge's section timeouts."""

    setup_timeout_s: float = 600.0
    """Set-up: process group, data, model, engine, checkpoint load, and the first step."""
    step_timeout_s: float = 180.0
    """One optimizer step (all micro-batches), after the first."""
    save_timeout_s: float = 420.0
    """One checkpoint save."""
    eval_timeout_s: float = 600.0
    """One validation pass."""

    def __post_init__(self) -> None:
        for name in ("setup_timeout_s", "step_timeout_s", "save_timeout_s", "eval_timeout_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"watchdog.{name}={getattr(self, name)} must be >= 0 (0: off)")

    def timeouts(self) -> dict[str, float]:
        return {"setup": self.setup_timeout_s, "step": self.step_timeout_s,
                "save": self.save_timeout_s, "eval": self.eval_timeout_s}


@dataclass(kw_only=True, slots=True)
class Config:
    """The whole run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lev: LEVConfig = field(default_factory=LEVConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)

    def __post_init__(self) -> None:
        tp, m = self.parallel.tensor_parallel, self.model
        for name, value in (("model.num_attention_heads", m.num_attention_heads),
                            ("model.vocab_size", m.vocab_size),
                            ("model.ffn_hidden_size", m.ffn_hidden_size),
                            ("model.num_query_groups", m.num_query_groups),
                            ("lev.num_modes", self.lev.num_modes)):
            if value is not None and value % tp:
                raise ConfigError(
                    f"parallel.tensor_parallel={tp} does not divide {name}={value}; use "
                    f"tensor_parallel in {[d for d in _divisors(value) if d <= 64]}"
                )
        if self.parallel.sequence_parallel and m.seq_length % tp:
            raise ConfigError(
                f"model.seq_length={m.seq_length} is not divisible by "
                f"parallel.tensor_parallel={tp}, which sequence parallelism needs"
            )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config, apply ``section.field=value`` overrides, validate.

    Args:
        path: YAML file with one mapping per section; ``base: other.yaml`` (relative to
            the file) loads that file first and merges this one over it. ``None``: defaults.
        overrides: ``"train.micro_batch_size=4"``-style strings; values are parsed as
            YAML (``true``, ``3e-4``, ``null``, ``[1, 2]``).

    Raises:
        ConfigError: unknown section or field (with the valid names), a value of the
            wrong type, a malformed override, or a failed validation.
    """
    raw = _read_yaml(Path(path)) if path is not None else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {item!r} is not 'section.field=value' (e.g. model.num_layers=4)")
        node = raw
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config section {'.'.join(parts[:depth + 1])!r} must be a mapping")
        try:
            node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML "
                              f"({_yaml_problem(exc)}); quote it") from None
    return _build(Config, raw, "")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return problem


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (see pretrain/configs/ for examples)")
    try:
        with path.open() as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        # PyYAML names a tab as the two characters backslash-t.
        hint = (" (YAML indents with spaces, not tabs)"
                if "'\\t'" in str(getattr(exc, "problem", "")) else "")
        raise ConfigError(f"{where}: {_yaml_problem(exc)}{hint}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _read_yaml(path.parent / base)
    for section, values in data.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        name = sorted(unknown)[0]
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown config key {prefix + name!r}{hint}; valid keys: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in raw.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"config section {prefix}{name!r} must be a mapping")
            kwargs[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, kind, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as exc:  # a missing required field
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def _coerce(value: Any, kind: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``kind``; ints are accepted for floats."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise ConfigError(f"{name}={value!r}; use one of {list(typing.get_args(kind))}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        options = [t for t in options if t is not type(None)]
        if len(options) > 1:
            for option in options:
                try:
                    return _coerce(value, option, name)
                except ConfigError:
                    continue
            raise ConfigError(
                f"{name}={value!r} is a {type(value).__name__}; it must be one of "
                f"{', '.join(getattr(t, '__name__', str(t)) for t in options)}")
        kind = options[0]
    if typing.get_origin(kind) is not None:  # list[Any] and the like: check the container
        kind = typing.get_origin(kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads `3e-4` without a dot as a string.
        try:
            return float(value)
        except ValueError:
            pass
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(
            f"{name}={value!r} is a {type(value).__name__}; it must be a {kind.__name__}"
        )
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (for checkpoints, logs and fingerprints)."""
    return dataclasses.asdict(config)


def config_to_yaml(config: Config) -> str:
    """The resolved config as YAML that ``load_config`` reads back to an equal ``Config``."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)


def check_world_size(config: Config, world_size: int) -> int:
    """Check the layout a launch of ``world_size`` processes gives; return the DP size.

    Runs before any process group exists, so a bad launch stops with one clear message.

    Raises:
        ConfigError: ``parallel.tensor_parallel`` does not divide the world size, or the
            global batch is not a multiple of micro-batch x DP.
    """
    tp = config.parallel.tensor_parallel
    if world_size % tp:
        raise ConfigError(
            f"parallel.tensor_parallel={tp} does not divide the {world_size} launched "
            f"processes; launch a multiple of {tp} ranks or set tensor_parallel to one of "
            f"{_divisors(world_size)}")
    dp = world_size // tp
    t = config.train
    per_pass = t.micro_batch_size * dp
    if t.global_batch_size % per_pass:
        lower = max(per_pass, t.global_batch_size // per_pass * per_pass)
        raise ConfigError(
            f"train.global_batch_size={t.global_batch_size} is not a multiple of "
            f"train.micro_batch_size={t.micro_batch_size} x DP {dp} ({world_size} ranks / "
            f"TP {tp}) = {per_pass}; use train.global_batch_size={lower} or {lower + per_pass}")
    return dp


def config_reference() -> str:
    """Every section and key with its type, default and documentation (``--help-config``)."""
    lines = []
    for section in dataclasses.fields(Config):
        lines += _reference(typing.get_type_hints(Config)[section.name], section.name)
    return "\n".join(lines)


def _reference(cls: type, prefix: str) -> list[str]:
    docs = _field_docs(cls)
    lines = [f"{prefix}:  {(cls.__doc__ or '').strip().splitlines()[0]}"]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            lines += ["", *_reference(kind, f"{prefix}.{f.name}")]
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if typing.get_origin(kind) is Literal:
            type_name = " | ".join(map(str, typing.get_args(kind)))
        else:
            type_name = getattr(kind, "__name__", str(kind).replace("typing.", ""))
        lines.append(f"  {prefix}.{f.name} ({type_name}; default {default!r})")
        lines += textwrap.wrap(docs.get(f.name, ""), width=92, initial_indent=" " * 6,
                               subsequent_indent=" " * 6)
    return [*lines, ""]


def _field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass (its documentation)."""
    import ast
    import inspect

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs
