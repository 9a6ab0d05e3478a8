"""Entry point: ``python -m pretrain.train --config FILE [section.field=value ...]``.

The same command runs under torchrun, srun and mpiexec (see pretrain/distributed.py).
Exit codes are :class:`pretrain.stopping.ExitCode`: 0 finished, 75 saved after a
signal or time budget (relaunch to resume), 76 signalled before any step (nothing new to
save), 77 hang detected by the watchdog, 2 config/data error, 3 non-finite loss.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pretrain.logs import setup_logging
from pretrain.stopping import ExitCode, StopController

log = logging.getLogger("pretrain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pretrain a LEV / tied / untied GPT.")
    parser.add_argument("--config", required=True, help="YAML config (pretrain/configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="section.field=value overrides")
    args = parser.parse_args(argv)
    setup_logging()
    # Before the heavy imports below (torch, megatron, DeepSpeed: tens of seconds): a
    # preemption signal from then on is recorded and honoured, not fatal.
    stopper = StopController()

    from pathlib import Path

    from pretrain.checkpoint import CheckpointMismatchError
    from pretrain.config import ConfigError, load_config
    from pretrain.data import DataMismatchError, ShardIndexError, ShardsNotFoundError
    from pretrain.distributed import destroy_distributed, detect_rank_layout
    from pretrain.trainer import NonFiniteLossError, Trainer
    from pretrain.watchdog import Watchdog

    user_errors = (ConfigError, DataMismatchError, ShardsNotFoundError, ShardIndexError,
                   CheckpointMismatchError)
    trainer = None
    try:
        config = load_config(args.config, args.overrides)
        stopper.set_time_budget(config.train.exit_duration_mins)
        watchdog = Watchdog(config.watchdog.timeouts(),
                            Path(config.checkpoint.save_dir) / ".heartbeats",
                            rank=detect_rank_layout().rank).start()
        watchdog.enter("setup")
        trainer = Trainer(config, stopper, watchdog)
        trainer.setup()
        return int(trainer.train())
    except user_errors as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return int(ExitCode.CONFIG_ERROR)
    except NonFiniteLossError as exc:
        log.error("%s", exc)
        return int(ExitCode.NON_FINITE)
    finally:
        if trainer is not None:
            trainer.close()
        else:
            stopper.restore()
        destroy_distributed()


if __name__ == "__main__":
    sys.exit(main())
