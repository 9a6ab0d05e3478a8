"""Entry point: ``python -m pretrain.train --config FILE [section.field=value ...]``.

The same command runs under torchrun, srun and mpiexec (see pretrain/runtime/distributed.py).
Exit codes are :class:`pretrain.runtime.stopping.ExitCode`: 0 finished, 75 saved after a
signal or time budget (relaunch to resume), 76 signalled before any step (nothing new to
save), 77 hang detected by the watchdog, 74 checkpoint unreadable at restart (I/O errors;
relaunch), 78 refused input (code in a checkpoint, a listed path outside its directory:
docs/trust.md), 2 config/data error, 3 non-finite loss. A config
or data error prints one line per job (``pretrain/runtime/errors.py``); torchrun itself exits 1
and names the error and each rank's code in its summary. Under ``slurm/launch_pretrain.sh``
the code is also published to ``LEV_EXIT_CODE_FILE`` before the teardown
(``pretrain/runtime/exit_code.py``), so a rank killed while tearing down cannot change it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pretrain.runtime.logs import setup_logging
from pretrain.runtime.stopping import ExitCode, StopController

log = logging.getLogger("pretrain")

_SECTIONS = ("model", "lev", "parallel", "data", "optimizer", "train", "checkpoint",
             "watchdog")


def _dotted_flags_as_overrides(argv: list[str]) -> list[str]:
    """``--train.lr=3e-4`` and ``--train.lr 3e-4`` (torchtitan / OLMo style) become the
    ``train.lr=3e-4`` overrides this CLI takes."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        key = arg[2:].partition("=")[0]
        if arg.startswith("--") and key.partition(".")[0] in _SECTIONS and "." in key:
            if "=" in arg:
                out.append(arg[2:])
            elif i + 1 < len(argv):
                out.append(f"{key}={argv[i + 1]}")
                i += 1
            else:
                out.append(f"{key}=")
        else:
            out.append(arg)
        i += 1
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pretrain.train",
        description="Pretrain a LEV / tied / untied GPT (megatron-core + DeepSpeed).",
        epilog=f"Config sections: {', '.join(_SECTIONS)}. Every key is listed, with its "
               f"default and documentation, by --help-config. Exit codes: 0 finished, 2 "
               f"config/data error, 3 non-finite loss, 74 checkpoint unreadable (relaunch), 75 "
               f"saved on a signal (relaunch), 76 signalled before any step, 77 hang, 78 "
               f"refused input (docs/trust.md).")
    parser.add_argument("--config", help="YAML config (pretrain/configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="overrides, values parsed as YAML (also --section.key=value)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML (feed it back with --config) "
                             "and exit")
    parser.add_argument("--help-config", action="store_true",
                        help="list every config section and key with its default and "
                             "documentation, and exit")
    args = parser.parse_args(_dotted_flags_as_overrides(list(sys.argv[1:] if argv is None
                                                             else argv)))
    if not args.config and not args.help_config:
        parser.error("the following arguments are required: --config")
    return args


def _published(code: int, *, collective: bool = False) -> int:
    """``code``, after publishing it for the launcher (pretrain/runtime/exit_code.py)."""
    from pretrain.runtime.exit_code import publish_exit_code
    from pretrain.runtime.launcher import detect_rank_layout

    publish_exit_code(code, rank=detect_rank_layout().rank, collective=collective)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pretrain.config import (
        ConfigError,
        check_world_size,
        config_reference,
        config_to_yaml,
        load_config,
    )
    from pretrain.runtime.errors import report
    from pretrain.runtime.launcher import detect_rank_layout

    if args.help_config:
        print(config_reference())
        return 0
    if args.print_config:
        try:
            print(config_to_yaml(load_config(args.config, args.overrides)), end="")
        except ConfigError as exc:
            return report("pretrain.train", exc, int(ExitCode.CONFIG_ERROR))
        return 0
    setup_logging()
    # Before the heavy imports below (torch, megatron, DeepSpeed: tens of seconds): a
    # preemption signal from then on is recorded and honoured, not fatal.
    stopper = StopController()
    from pathlib import Path

    trainer = None
    try:
        config = load_config(args.config, args.overrides)
        check_world_size(config, detect_rank_layout().world_size)  # before any process group
    except ConfigError as exc:
        stopper.restore()
        return _published(report("pretrain.train", exc, int(ExitCode.CONFIG_ERROR)))

    from data_prep.paths import PathOutsideError
    from megatron_patches.safe_load import UnsafeCheckpointError
    from pretrain.checkpoint.manager import CheckpointMismatchError, CheckpointUnreadableError
    from pretrain.checkpoint.preflight import restrict_new_files
    from pretrain.data.shards import DataMismatchError, ShardIndexError, ShardsNotFoundError
    from pretrain.runtime.distributed import destroy_distributed
    from pretrain.runtime.watchdog import StepTimeout, Watchdog
    from pretrain.training.trainer import NonFiniteLossError, Trainer

    user_errors = (ConfigError, DataMismatchError, ShardsNotFoundError, ShardIndexError,
                   CheckpointMismatchError)
    try:
        stopper.set_time_budget(config.train.exit_duration_mins)
        restrict_new_files(config.checkpoint.group_access, config.checkpoint.save_dir,
                           rank=detect_rank_layout().rank)  # before save_dir is written
        w = config.watchdog
        watchdog = Watchdog(w.timeouts(), Path(config.checkpoint.save_dir) / ".heartbeats",
                            rank=detect_rank_layout().rank,
                            step_timeout=StepTimeout(w.step_timeout_multiple,
                                                     w.step_timeout_floor_s)).start()
        watchdog.enter("setup")
        trainer = Trainer(config, stopper, watchdog)
        trainer.setup()
        # Published before the teardown below (metric sinks, process groups), which can be
        # slow or be killed: the launcher already knows the outcome.
        return _published(int(trainer.train()), collective=True)
    except (UnsafeCheckpointError, PathOutsideError) as exc:
        return _published(report("pretrain.train", exc, int(ExitCode.REFUSED)))
    except user_errors as exc:
        return _published(report("pretrain.train", exc, int(ExitCode.CONFIG_ERROR)))
    except CheckpointUnreadableError as exc:
        return _published(report("pretrain.train", exc, int(ExitCode.IO_ERROR)))
    except NonFiniteLossError as exc:
        # The loss is all-reduced: every rank raises at the same step.
        return _published(report("pretrain.train", exc, int(ExitCode.NON_FINITE)),
                          collective=True)
    finally:
        # From here to the process's end a signal (a second scancel, the time limit's TERM
        # after USR1) is ignored instead of killing a rank that has saved
        # (pretrain/runtime/stopping.py); SIGKILL still ends a teardown that hangs.
        stopper.ignore_until_exit()
        if trainer is not None:
            trainer.close()
        destroy_distributed()


if __name__ == "__main__":
    sys.exit(main())
