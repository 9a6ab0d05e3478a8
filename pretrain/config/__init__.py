"""The one configuration tree: dataclasses per section, loaded from YAML, dotted overrides.

``load_config("pretrain/configs/lev_1b2.yaml", ["train.micro_batch_size=4"])`` reads the
file (following ``base:`` to a parent file), applies ``section.field=value`` overrides
(values parsed as YAML), and validates everything once, up front, with messages that say
what to change. Every field carries its documentation; the config *is* the reference.
"""

from pretrain.config.errors import ConfigError
from pretrain.config.loading import config_from_dict, config_to_dict, config_to_yaml, load_config
from pretrain.config.model import EMBEDDINGS, LEVConfig, ModelConfig, ParallelConfig
from pretrain.config.reference import config_reference
from pretrain.config.run import (
    CheckpointConfig,
    DataConfig,
    OptimizerConfig,
    TrainConfig,
    WandbConfig,
    WatchdogConfig,
)
from pretrain.config.tree import Config, check_world_size

__all__ = [
    "config_from_dict",
    "EMBEDDINGS",
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
