"""`slurm/submit_ladder.sh 200m` on the session's local Slurm: every arm of the rung a user
runs first is submitted through its sbatch template and finishes, and the ladder report
reads the runs.

A dry run: the command line shrinks every arm to the tiny CPU shape and two steps (the
sbatch options after the rung defaults win, the overrides after ``--`` reach every arm's
training). One rung, not ``all``: each job is ~20 CPU-seconds of Python start-up, and nine
of them would cost CI a minute and a half on two cores; ``all``'s nine command lines are
checked without Slurm in tests/scripts/test_submit_ladder.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import LocalSlurm

from pretrain.study.ladder import main as ladder_main
from tests.conftest import REPO
from tests.pretrain.conftest import shard_dir  # noqa: F401  (session fixture: tiny shards)
from tests.pretrain.train_helpers import TINY_MODEL

pytestmark = [pytest.mark.slurm, pytest.mark.multiproc]

RUNG, ARMS = "200m", ("lev", "tied", "untied")
STEPS = 2
#: One rank per job on no GPU; after the rung defaults, so these win.
CPU_JOB = ["--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1",
           "--time=30"]  # minutes; longer than the templates' 600 s USR1 lead
#: The tiny shape, two steps, a validation pass on the last one (what the report reads),
#: no periodic save (the final one is the run's checkpoint), the whole tiny val split.
OVERRIDES = [*TINY_MODEL, f"train.train_steps={STEPS}", f"train.eval_interval={STEPS}",
             "train.eval_samples=0", "checkpoint.save_interval=0"]


@pytest.fixture(scope="module")
def ladder(local_slurm: LocalSlurm, shard_dir: Path,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, int], str]]:
    """RUNS_DIR, {job name: job id} and the submit command's output, after every job ended."""
    runs = tmp_path_factory.mktemp("ladder_runs")
    env = {**local_slurm.env, "RUNS_DIR": str(runs), "DATA_PATH": str(shard_dir),
           "PYTHON": sys.executable,
           "ALLOW_LOCAL_SAVE_DIR": "1"}  # pytest's tmp is node-local; one node here
    done = subprocess.run(["bash", "slurm/submit_ladder.sh", *CPU_JOB, RUNG, "--", *OVERRIDES],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {line.split()[1]: int(line.split()[3]) for line in done.stdout.splitlines()
            if line.startswith("submitted ")}
    try:
        for job in jobs.values():
            local_slurm.wait(job, timeout=300)
        yield runs, jobs, done.stdout
    finally:
        local_slurm.cancel_all()


def test_submit_ladder_submits_and_finishes_every_arm_of_the_rung(
        local_slurm: LocalSlurm, ladder: tuple[Path, dict[str, int], str]) -> None:
    runs, jobs, _ = ladder

    assert sorted(jobs) == sorted(f"{arm}-{RUNG}" for arm in ARMS)
    for name, job in jobs.items():
        arm, rung = name.split("-")
        log = (runs / "logs" / f"{name}-{job}.out").read_text(errors="replace")
        assert local_slurm.state(job) == "COMPLETED", log[-4000:]
        # The arm's own config through its own template, into its own SAVE_DIR.
        assert f"--config {REPO}/pretrain/configs/{arm}_{rung}.yaml" in log, log[-4000:]
        save = runs / f"{arm}_{rung}"
        assert (save / "latest").read_text().strip() == f"step{STEPS:08d}"
        meta = json.loads((save / f"step{STEPS:08d}" / "meta.json").read_text())
        assert meta["config"]["model"]["embedding"] == arm
        assert meta["config"]["checkpoint"]["save_dir"] == str(save)


def test_ladder_report_reads_every_finished_run_of_the_dry_run(
        ladder: tuple[Path, dict[str, int], str], tmp_path: Path) -> None:
    runs, _, _ = ladder
    out = tmp_path / "ladder.md"
    # In this process (the command's own main): a second interpreter would import
    # megatron-core again for the same check.
    code = ladder_main(["report", str(runs), "--out", str(out),
                        "--target-config", "pretrain/configs/tiny_lev.yaml"])

    assert code == 0
    text = out.read_text()
    losses = {}
    for arm in ARMS:
        records = [json.loads(line) for line in
                   (runs / f"{arm}_{RUNG}" / "metrics.jsonl").read_text().splitlines()]
        losses[arm] = [r["val_loss"] for r in records if "val_loss" in r][-1]
    for baseline in ("tied", "untied"):
        row = next(line for line in text.split(f"## LEV vs {baseline}")[1].splitlines()
                   if line.startswith(f"| {RUNG} |"))
        cells = [c.strip() for c in row.split("|")]
        assert cells[6:8] == [f"{losses['lev']:.4f}", f"{losses[baseline]:.4f}"], row
    # One rung has one body, so there is nothing to fit against size yet.
    assert text.count("No trend: the size trend needs at least two body sizes.") == 2
    assert "Runs not in the fits" not in text
