"""The command line: ``run`` (the default) and the subcommands its workers are."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

__all__ = ["main"]

USAGE = """\
subcommands (gpu_check.sh calls `bundle-check` and `run`; `run` calls the others, each a
process of its own, so a hang, crash or out-of-memory is killed on time):
  run [--out DIR] [--work DIR]     every part; writes OUT/gpu_check.json and .log
  bundle-check DIR                 can the GPU host install DIR? (exit 1 naming each problem)
  env                              the environment probe, as JSON lines
  throughput --config F --json P [--deadline T] [key=value ...]
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python scripts/gpu_check", epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One-shot check of the CUDA path: bf16, NCCL, 1.2B throughput and MFU, "
                    "LEV's overhead over tied, exact resume and evaluation, in at most 6 "
                    "minutes (GPU_CHECK_DRY_RUN=1: the same on CPU at tiny shapes).")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="every part; the default")
    run.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out",
                     help="where gpu_check.json and gpu_check.log go (default: $OUT, else "
                          "gpu_check_out)")
    run.add_argument("--work", default=None,
                     help="scratch for data, checkpoints, results (default: a new temp dir)")
    check = sub.add_parser("bundle-check", help="can the GPU host install this wheel folder?")
    check.add_argument("bundle", type=Path, help="the folder gpu_bundle.sh built")
    sub.add_parser("env", help="the environment probe, as JSON lines")
    thr = sub.add_parser("throughput", help="time one config's optimizer steps")
    thr.add_argument("--config", required=True, help="YAML config (pretrain/configs/*.yaml)")
    thr.add_argument("--json", required=True, help="where to write the result")
    thr.add_argument("--deadline", type=float, default=float("inf"),
                     help="epoch seconds: time no step that would end after it")
    thr.add_argument("--steps", type=int, default=3, help="timed steps at most")
    thr.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    thr.add_argument("overrides", nargs="*", help="section.field=value overrides")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit code."""
    args = _parser().parse_args(argv)
    dry_run = os.environ.get("GPU_CHECK_DRY_RUN") == "1"
    # Each subcommand imports only what it needs: the bundle check runs before the bundle
    # is installed, so it must not import torch or the training code.
    if args.command == "bundle-check":
        from .bundle import cmd_bundle_check

        return cmd_bundle_check(args.bundle)
    if args.command == "env":
        from .probe import cmd_env

        return cmd_env(dry_run)
    if args.command == "throughput":
        from .measure import cmd_throughput

        return cmd_throughput(args)
    from .check import run_check

    out = Path(getattr(args, "out", None) or os.environ.get("OUT") or "gpu_check_out")
    work = getattr(args, "work", None) or tempfile.mkdtemp(prefix="lev-gpu-check-")
    return run_check(out, Path(work), dry_run)
