"""slurm/submit_ladder.sh's command lines and argument errors, without Slurm (--print-only
and refusals submit nothing; tests/slurm/test_ladder_job.py runs a rung for real)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "slurm" / "submit_ladder.sh"


def run(*args: str, runs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=30, env={"PATH": "/usr/bin:/bin",
                                                      "RUNS_DIR": str(runs)})


def test_all_prints_one_sbatch_per_arm_smallest_rung_first_with_its_defaults(tmp_path: Path):
    done = run("--print-only", "--partition=gpu", "all", "--", "train.seed=2", runs=tmp_path)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    expected = [(arm, rung) for rung in ("200m", "400m", "1b2")
                for arm in ("lev", "tied", "untied")]
    assert len(lines) == len(expected)
    defaults = {"200m": "--nodes=1 --time=06:00:00 ", "400m": "--nodes=1 --time=12:00:00 ",
                "1b2": ""}
    for line, (arm, rung) in zip(lines, expected, strict=True):
        assert line == (
            f"CONFIG=pretrain/configs/{arm}_{rung}.yaml SAVE_DIR={tmp_path}/{arm}_{rung} "
            f"RUN_NAME={arm}_{rung} sbatch --parsable --job-name={arm}-{rung} "
            f"--output={tmp_path}/logs/%x-%j.out {defaults[rung]}--partition=gpu "
            f"{REPO}/slurm/pretrain_{arm}_1b2.sh train.seed=2")
    assert not (tmp_path / "logs").exists()  # nothing created, nothing submitted


def test_an_unknown_rung_exits_2_before_submitting_anything(tmp_path: Path):
    done = run("200m", "300m", runs=tmp_path)

    assert done.returncode == 2
    assert done.stderr.strip() == ("submit_ladder: error: unknown rung '300m': choose from "
                                   "200m 400m 1b2, or all")
    assert done.stdout == "" and not (tmp_path / "logs").exists()
