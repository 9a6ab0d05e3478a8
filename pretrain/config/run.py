"""The run's sections: data, optimizer, training loop (with W&B), checkpoints, watchdog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pretrain.config.data_path import parse_data_path
from pretrain.config.errors import ConfigError

__all__ = ["CheckpointConfig", "DataConfig", "OptimizerConfig", "TrainConfig", "WandbConfig",
           "WatchdogConfig"]


@dataclass(kw_only=True, slots=True)
class DataConfig:
    """Shards written by ``data_prep/shard.py``."""

    path: str | list[Any] = ""
    """Shard directory (holds manifest.json and the *.wids.json lists), or a weighted
    mixture of several: ``"0.7 DIR_A 0.3 DIR_B"`` (Megatron's form), ``[0.7, DIR_A, 0.3,
    DIR_B]`` or ``[{path: DIR_A, weight: 0.7}, {path: DIR_B, weight: 0.3, name: code}]``
    (``pretrain/data/blend.py``)."""
    shuffle_seed: int = 1234
    """Seed of the per-epoch sample permutation (and of the mixture)."""

    def __post_init__(self) -> None:
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
    """Weights & Biases mirror of metrics.jsonl (``pretrain/runtime/wandb_sink.py``); off unless
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
    pseudo-random subset drawn across all shards (``pretrain.data.sampler.val_subset_ids``),
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
    io_attempts: int = 3
    """Attempts at each checkpoint read that fails with an I/O error while a restart
    verifies its checkpoint (1 s, 2 s, 4 s ... apart). A missing file, a wrong size or
    checksum is damage (the tag is skipped); an I/O error still there after these
    attempts stops the run with exit 74 (retried by the launchers), moving nothing."""
    lease_timeout_s: float = 60.0
    """One job writes a save_dir at a time: rank 0 holds ``save_dir/.lease.json`` (job id,
    host, pid), renewed every quarter of this. A job that finds another live job's lease
    waits up to this long for it to end, then refuses to start (exit 2) naming that job;
    a lease of the same (requeued) job, of a process that is gone, or not renewed for
    this long is taken over. 0: no lease (and no protection)."""
    ignore_abandoned: bool = False
    """Let ``resume=auto`` start from step 0 when save_dir holds no checkpoint but
    ``save_dir/abandoned/`` does. Without it such a start is refused (exit 2): the
    checkpoints set aside there are this run's history, and a restart that finds nothing
    else usually means something to look at, not a new run."""
    group_access: Literal["none", "read"] = "read"
    """Who besides you may open what the run creates in save_dir (directories,
    checkpoints, meta.json, metrics): ``read`` lets the file's group read it (to hand
    checkpoints to a team), ``none`` keeps it to your user. Nobody else ever gets write
    access and other users get none, whatever the umask (docs/trust.md)."""

    def __post_init__(self) -> None:
        if self.group_access not in ("none", "read"):
            raise ConfigError(f"checkpoint.group_access={self.group_access!r}; use 'read' (the "
                              "group may read checkpoints) or 'none' (only your user)")
        if self.probe_timeout_s <= 0:
            raise ConfigError(f"checkpoint.probe_timeout_s={self.probe_timeout_s} must be > 0")
        if self.lease_timeout_s < 0:
            raise ConfigError(f"checkpoint.lease_timeout_s={self.lease_timeout_s} must be >= 0 "
                              "(0: no lease)")
        if self.io_attempts < 1:
            raise ConfigError(f"checkpoint.io_attempts={self.io_attempts} must be >= 1 (1: no "
                              "retry of a failed read)")
        if self.save_interval < 0:
            raise ConfigError(f"checkpoint.save_interval={self.save_interval} must be >= 0 "
                              "(0: save only at the end and on signals)")
        if self.keep_last < 1:
            raise ConfigError(f"checkpoint.keep_last={self.keep_last} must be >= 1")
        if not self.save_dir:
            raise ConfigError("checkpoint.save_dir is empty; give a directory on shared storage")


@dataclass(kw_only=True, slots=True)
class WatchdogConfig:
    """Hang detection (``pretrain/runtime/watchdog.py``): a rank that spends longer than a section's
    timeout in it logs the lagging ranks and exits 77; 0 disables a section's timeout.
    Defaults are NVIDIA Resiliency Extension's / Megatron Bridge's section timeouts."""

    setup_timeout_s: float = 600.0
    """Set-up: process group, data, model, engine, checkpoint load, and the first step."""
    step_timeout_s: float = 180.0
    """One optimizer step (all micro-batches), after the first: the most a step may take;
    once steps are measured the timeout is tightened (``step_timeout_multiple``)."""
    step_timeout_multiple: float = 5.0
    """After 5 timed steps the step timeout becomes this multiple of the slowest step so
    far, never below ``step_timeout_floor_s`` nor above ``step_timeout_s``, as
    nvidia-resiliency-ext's ``safety_factor`` (5) derives its timeouts from observed
    intervals: at 0.3 s/step a hang is caught after the floor, not after
    ``step_timeout_s``. 0: always ``step_timeout_s``."""
    step_timeout_floor_s: float = 60.0
    """The least step timeout derived from measured steps (room for a slow log write, a
    garbage collection, a shard opened on a busy file system)."""
    save_timeout_s: float = 420.0
    """One checkpoint save."""
    eval_timeout_s: float = 600.0
    """One validation pass."""

    def __post_init__(self) -> None:
        for name in ("setup_timeout_s", "step_timeout_s", "save_timeout_s", "eval_timeout_s",
                     "step_timeout_multiple"):
            if getattr(self, name) < 0:
                raise ConfigError(f"watchdog.{name}={getattr(self, name)} must be >= 0 (0: off)")
        if self.step_timeout_multiple and self.step_timeout_floor_s <= 0:
            raise ConfigError(
                f"watchdog.step_timeout_floor_s={self.step_timeout_floor_s} must be > 0 while "
                f"watchdog.step_timeout_multiple={self.step_timeout_multiple} derives the step "
                f"timeout (set step_timeout_multiple=0 for a fixed step_timeout_s)")
        if 0 < self.step_timeout_multiple < 2:
            raise ConfigError(
                f"watchdog.step_timeout_multiple={self.step_timeout_multiple} would time out "
                f"ordinary steps that are a little slower than the slowest seen; use >= 2 "
                f"(default 5), or 0 for a fixed watchdog.step_timeout_s")

    def timeouts(self) -> dict[str, float]:
        return {"setup": self.setup_timeout_s, "step": self.step_timeout_s,
                "save": self.save_timeout_s, "eval": self.eval_timeout_s}
