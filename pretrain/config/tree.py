"""The whole configuration (``Config``, one section per field) and the checks across sections."""

from __future__ import annotations

from dataclasses import dataclass, field

from pretrain.config.errors import ConfigError, divisors
from pretrain.config.model import LEVConfig, ModelConfig, ParallelConfig
from pretrain.config.run import (
    CheckpointConfig,
    DataConfig,
    OptimizerConfig,
    TrainConfig,
    WatchdogConfig,
)

__all__ = ["Config", "check_world_size"]


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
                            ("lev.num_modes", self.lev.num_modes),
                            ("lev.aggregation_hidden", self.lev.aggregation_hidden)):
            if value is not None and value % tp:
                raise ConfigError(
                    f"parallel.tensor_parallel={tp} does not divide {name}={value}; use "
                    f"tensor_parallel in {[d for d in divisors(value) if d <= 64]}"
                )
        if self.parallel.sequence_parallel and m.seq_length % tp:
            raise ConfigError(
                f"model.seq_length={m.seq_length} is not divisible by "
                f"parallel.tensor_parallel={tp}, which sequence parallelism needs"
            )


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
            f"{divisors(world_size)}")
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
