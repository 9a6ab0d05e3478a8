"""Wall time of ``--help`` for every command a user runs (target: under 2 s each).

    python benchmarks/help_latency.py [--repeats 3] [--target 2.0]

Each command (``python -m pretrain.*``, ``python data_prep/*.py``, ``python
benchmarks/*.py``, ``bash scripts/{demo,test,compare_embeddings}.sh``) runs ``--help`` in a
fresh process ``--repeats`` times from the repository root; the table shows the fastest and
the slowest run, the exit code and whether the target is met on the fastest. A ``--help``
is slow when its module imports torch, megatron-core or DeepSpeed before parsing the
arguments (several seconds on a 2-core VM, more while other jobs run): those imports
belong after ``parse_args``. The fastest run is the one compared with the target because
other processes on a shared machine only ever add time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["REPO", "help_commands", "main"]

REPO = Path(__file__).resolve().parents[1]


def help_commands() -> dict[str, list[str]]:
    """Every user-facing command by a short name, each as an argv that asks for its help."""
    py = sys.executable
    commands = {f"pretrain.{m}": [py, "-m", f"pretrain.{m}", "--help"]
                for m in ("train", "evaluate", "export_hf", "generate", "params", "cloze_task",
                          "study")}
    commands |= {f"data_prep/{s}.py": [py, f"data_prep/{s}.py", "--help"]
                 for s in ("shard", "train_tokenizer", "verify", "sample_corpus",
                           "wordnet_corpus")}
    commands |= {f"benchmarks/{p.name}": [py, f"benchmarks/{p.name}", "--help"]
                 for p in sorted((REPO / "benchmarks").glob("*.py"))}
    commands |= {f"scripts/{s}.sh": ["bash", f"scripts/{s}.sh", "--help"]
                 for s in ("demo", "test", "compare_embeddings")}
    return commands


def time_help(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, exit code) of one run of ``argv`` from the repository root."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per command (3)")
    parser.add_argument("--target", type=float, default=2.0, help="seconds (2.0)")
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME",
                        help="time only these commands (names as in the table)")
    args = parser.parse_args(argv)
    commands = help_commands()
    if args.only:
        unknown = sorted(set(args.only) - set(commands))
        if unknown:
            parser.error(f"unknown command {unknown[0]!r}; choose from {', '.join(commands)}")
        commands = {name: commands[name] for name in args.only}

    print(f"{'command':<34}{'fastest':>9}{'slowest':>9}  exit  target {args.target:.1f} s")
    missed = 0
    for name, cmd in commands.items():
        runs = [time_help(cmd) for _ in range(args.repeats)]
        fastest, slowest = min(t for t, _ in runs), max(t for t, _ in runs)
        codes = sorted({rc for _, rc in runs})
        met = fastest < args.target and codes == [0]
        missed += not met
        print(f"{name:<34}{fastest:>8.2f}s{slowest:>8.2f}s  {','.join(map(str, codes)):>4}  "
              f"{'met' if met else 'MISSED'}")
    print(f"{len(commands) - missed} of {len(commands)} commands answer --help in under "
          f"{args.target:.1f} s (fastest of {args.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
