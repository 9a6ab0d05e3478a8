"""Two-node jobs on a real three-node local Slurm (three slurmd daemons on this machine,
``node1``-``node3``; see ``LocalSlurm(nodes=3)``), through the real sbatch files:

- the pretraining job across two nodes: the rendezvous address, ranks and node-local ranks
  come from Slurm's allocation, and a USR1 saves, requeues and resumes bit for bit;
- a node that dies mid-run (its slurmd, step daemons and ranks SIGKILLed at once): the
  surviving rank and the step end within the documented bound, the job is retried away
  from the dead node (the spare takes its place even after it returns) and resumes bit for
  bit from the last checkpoint;
- ``slurm/shard_corpus.sh`` on two nodes writes the same bytes as one process, and a
  requeue of a job run with ``--overwrite`` keeps the units it finished.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from local_cluster import LocalSlurm

from tests.conftest import REPO
from tests.pretrain.conftest import shard_dir  # noqa: F401  (session fixture: tiny shards)
from tests.slurm.test_job_stops import (
    assert_losses_equal_reference,
    rank_pid,
    saved_step,
    started,
    steps_logged,
    wait_for,
)
from tests.slurm.test_pretrain_job import STEPS, Job, rendezvous_port, submit, train_env

pytestmark = [pytest.mark.slurm, pytest.mark.multiproc]

TWO_NODES = ("--nodes=2", "--ntasks-per-node=1")
# Node death: the watchdog's step timeout bounds how long the surviving rank can wait on
# its dead peer (a collective either fails at once or hangs); srun's --wait then ends the
# step. Both shortened from the shipped 180 s / 60 s: the test needs the mechanism.
STEP_TIMEOUT_S, SRUN_WAIT_S = 30, 10
KILL_WAIT_S = 10  # the local cluster's KillWait: srun waits KillWait + 2 s for a lost node


def hostnames(cluster: LocalSlurm, nodelist: str) -> list[str]:
    return cluster._client("scontrol", "show", "hostnames", nodelist).split()


def job_nodes(job: Job) -> list[str]:
    return hostnames(job.slurm, job.slurm.job_info(job.id)["NodeList"])


def env_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def jobs(multinode_slurm: LocalSlurm, shard_dir: Path,  # noqa: F811
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Job]]:
    """The training jobs of this file, submitted together. The USR1 job is held until its
    test releases it (the signal must land mid-run), the node-death job until its test can
    run it alone on the cluster (a dead node takes every task on it along)."""
    root = tmp_path_factory.mktemp("multinode_jobs")
    # The launcher's srun with PYTHON replaced by a probe: it initialises the process group
    # as pretrain.train does, gathers every rank's node over it, and records what it saw.
    probe = root / "probe_python"
    # It also records the address pretrain.train would pick itself under a bare srun
    # (no MASTER_ADDR from the launcher).
    code = ("import json, os; from pretrain.runtime.distributed import init_distributed, "
            "all_gather_object, destroy_distributed, _master_addr, detect_rank_layout; "
            "given = os.environ.pop('MASTER_ADDR'); "
            "own_addr = _master_addr(detect_rank_layout()); os.environ['MASTER_ADDR'] = given; "
            "layout = init_distributed(1, 0); "
            "keys = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', "
            "'SLURMD_NODENAME', 'SLURM_NODEID'); rec = {k: os.environ[k] for k in keys}; "
            "rec['own_addr'] = own_addr; "
            "rec['gathered'] = all_gather_object(os.environ['SLURMD_NODENAME']); "
            f"open('{root}/probe/rank' + os.environ['RANK'] + '.json', 'w').write(json.dumps(rec)); "
            "destroy_distributed()")
    probe.write_text(f"#!/bin/bash\nexec {sys.executable} -c \"{code}\"\n")
    probe.chmod(0o755)

    def job(name: str, *options: str, extra: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> Job:
        return submit(multinode_slurm, root / name, *TWO_NODES, *options,
                      env={**train_env(shard_dir, root / name / "run", *extra), **(env or {})})

    submitted = {
        "reference": job("reference"),
        "usr1": job("usr1", "--hold"),  # released by its test: the signal must land mid-run
        "probe": job("probe", "--ntasks-per-node=2", env={"PYTHON": str(probe)}),
        # Retries (launch_pretrain.sh): four runs of one job, each ended by killing rank 1.
        "crashes": job("crashes", "--hold", extra=("checkpoint.save_interval=50",),
                       env={"SRUN_WAIT_S": str(SRUN_WAIT_S)}),
        "node_death": job("node_death", "--hold",
                          extra=("checkpoint.save_interval=10",
                                 f"watchdog.step_timeout_s={STEP_TIMEOUT_S}"),
                          env={"SRUN_WAIT_S": str(SRUN_WAIT_S)}),
    }
    yield submitted
    multinode_slurm.cancel_all()


def test_ranks_on_two_nodes_get_their_node_layout_and_meet_at_the_first_nodes_address(
        jobs: dict[str, Job]) -> None:
    job = jobs["probe"]
    state, text = job.finish()

    assert state == "COMPLETED", text[-4000:]
    nodes = job_nodes(job)
    assert len(nodes) == 2, nodes
    records = [json.loads((job.dir / f"rank{rank}.json").read_text()) for rank in range(4)]
    # Block distribution: ranks 0-1 on the first node, 2-3 on the second.
    assert [(r["RANK"], r["LOCAL_RANK"], r["WORLD_SIZE"], r["LOCAL_WORLD_SIZE"],
             r["SLURMD_NODENAME"], r["SLURM_NODEID"]) for r in records] == [
        ("0", "0", "4", "2", nodes[0], "0"), ("1", "1", "4", "2", nodes[0], "0"),
        ("2", "0", "4", "2", nodes[1], "1"), ("3", "1", "4", "2", nodes[1], "1")]
    # The rendezvous address is the first node's NodeAddr, not its name: these node names
    # resolve nowhere, as on any cluster whose node names are not host names.
    assert {r["MASTER_ADDR"] for r in records} == {"127.0.0.1"}
    assert {r["own_addr"] for r in records} == {"127.0.0.1"}  # under a bare srun too
    # One process group across both nodes: every rank saw every rank's node.
    assert all(r["gathered"] == [nodes[0], nodes[0], nodes[1], nodes[1]] for r in records)


def test_usr1_on_two_nodes_saves_requeues_and_resumes_bit_for_bit(jobs: dict[str, Job]) -> None:
    job = started(jobs["usr1"])
    wait_for(lambda: steps_logged(job) >= 1, job, "a training step")
    # What `#SBATCH --signal=B:USR1@600` does before the time limit.
    job.slurm.signal(job.id, "USR1", batch_only=True)

    state, text = job.finish()
    assert state == "COMPLETED", text[-6000:]
    assert job.slurm.requeue_count(job.id) == 1, text[-6000:]
    assert text.count("restart 0 on 2 node(s)") == 1 and text.count("restart 1 on 2 node(s)") == 1
    # Rank 1 runs on the second node: the signal crossed nodes through srun.
    for rank in (0, 1):
        assert f"[rank {rank}] WARNING pretrain.runtime.stopping: received SIGUSR1" in text, text[-6000:]
    assert "training exited with code 75" in text
    resumed = [line for line in text.splitlines() if "resumed from" in line]
    assert len(resumed) == 1, text[-6000:]
    assert 1 <= int(resumed[0].split("(step ")[1].split(",")[0]) < STEPS
    assert_losses_equal_reference(job, jobs["reference"])


def kill_rank_1(job: Job) -> str:
    """SIGKILL rank 1 of ``job``; return the node it ran on."""
    pid = rank_pid(job, 1)
    node = env_of(pid)["SLURMD_NODENAME"]
    os.kill(pid, signal.SIGKILL)
    return node


def test_failures_before_a_new_checkpoint_are_retried_once_and_the_count_restarts_when_latest_advances(
        jobs: dict[str, Job]) -> None:
    job = started(jobs["crashes"])
    runs_ended = lambda n: lambda: job.text().count("training exited with code") >= n  # noqa: E731
    run_started = lambda n: lambda: (job.text().count(f"restart {n - 1} on") == 1  # noqa: E731
                                     and rank_alive(job, 1))

    # Run 1: rank 1 dies as soon as it runs, long before a checkpoint: retried once, away
    # from its node (the cluster has a spare).
    wait_for(run_started(1), job, "run 1")
    first_victim = kill_rank_1(job)
    wait_for(runs_ended(1), job, "run 1 ending")
    # Run 2 starts from scratch on other nodes, saves (every 50 steps) and dies after the
    # save: retried (progress), and the count of failures without a new checkpoint restarts.
    wait_for(run_started(2), job, "run 2")
    wait_for(lambda: saved_step(job) >= 50, job, "run 2's checkpoint")
    kill_rank_1(job)
    wait_for(runs_ended(2), job, "run 2 ending")
    saved = f"step{saved_step(job):08d}"
    # Run 3 dies as soon as it runs: retried once more, as `latest` advanced since run 1.
    wait_for(run_started(3), job, "run 3")
    kill_rank_1(job)

    state, text = job.finish()
    assert state == "COMPLETED", text[-6000:]
    assert job.slurm.requeue_count(job.id) == 3, text[-6000:]
    retries = re.findall(r"training failed with exit code \d+ .*?(before a new checkpoint; retry 1 of "
                         r"1 from .*|after writing step\d+; retrying from it)", text)
    assert retries == ["before a new checkpoint; retry 1 of 1 from the start",
                       f"after writing {saved}; retrying from it",
                       f"before a new checkpoint; retry 1 of 1 from {saved}"], text[-6000:]
    # The first exclusion leaves 2 nodes for a 2-node job; a second would leave 1, so the
    # launcher declines it rather than make the job unschedulable.
    assert f"the next run of job {job.id} avoids node(s) {first_victim}" in text
    run2 = re.findall(r"restart 1 on 2 node\(s\) \[([^\]]+)\]", text)[0]
    assert first_victim not in hostnames(job.slurm, run2)
    assert ("would leave 1 of partition debug's 3 nodes for a job of 2; not excluding" in text), text[-6000:]
    assert_losses_equal_reference(job, jobs["reference"])


def test_a_failure_before_a_new_checkpoint_is_not_retried_twice_in_a_row(
        multinode_slurm: LocalSlurm, shard_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    job = submit(multinode_slurm, tmp_path, *TWO_NODES, env={
        **train_env(shard_dir, tmp_path / "run"), "SRUN_WAIT_S": str(SRUN_WAIT_S)})
    for run in (1, 2):  # rank 1 dies as soon as it runs: never a checkpoint
        wait_for(lambda run=run: job.text().count(f"restart {run - 1} on") == 1
                 and rank_alive(job, 1), job, f"run {run}")
        kill_rank_1(job)
        wait_for(lambda run=run: job.text().count("training exited with code") >= run, job,
                 f"run {run} ending")

    state, text = job.finish()
    assert state == "FAILED", text[-6000:]
    assert multinode_slurm.requeue_count(job.id) == 1
    assert "before a new checkpoint; retry 1 of 1 from the start" in text
    assert ("not retrying: 1 run(s) in a row already failed before a new checkpoint "
            "(MAX_FAILURE_RETRIES=1)") in text, text[-6000:]


def rank_alive(job: Job, rank: int) -> bool:
    try:
        rank_pid(job, rank)
    except AssertionError:
        return False
    return True


def test_a_node_that_dies_mid_run_ends_the_step_and_the_job_resumes_bit_for_bit_elsewhere(
        jobs: dict[str, Job], multinode_slurm: LocalSlurm) -> None:
    cluster = multinode_slurm
    for other in ("reference", "usr1", "probe", "crashes"):
        info = cluster.job_info(jobs[other].id)
        if info["JobState"] == "PENDING" and info.get("Reason") == "JobHeldUser":
            cluster._client("scancel", str(jobs[other].id))  # its test was not selected
        else:
            jobs[other].finish()
    job = started(jobs["node_death"])
    wait_for(lambda: saved_step(job) >= 10 and steps_logged(job) >= 12, job, "a checkpoint")
    first_nodes = job_nodes(job)
    survivor = rank_pid(job, 0)
    victim = env_of(rank_pid(job, 1))["SLURMD_NODENAME"]
    assert victim == first_nodes[1] and env_of(survivor)["SLURMD_NODENAME"] == first_nodes[0]

    cluster.kill_node(victim)
    died = time.monotonic()
    wait_for(lambda: not alive(survivor), job, "the surviving rank to end", 120)
    survivor_s = time.monotonic() - died
    wait_for(lambda: "training exited with code" in job.text(), job, "srun to end", 120)
    step_s = time.monotonic() - died
    # The requeued job cannot start before Slurm has finished the old run on every node,
    # the dead one included: it returns (or SlurmdTimeout declares it DOWN).
    wait_for(lambda: "requeued job" in job.text(), job, "the requeue", 60)
    cluster.start_node(victim)

    state, text = job.finish()
    assert state == "COMPLETED", text[-6000:]
    assert cluster.requeue_count(job.id) == 1, text[-6000:]
    # The bound slurm/README.md documents: the surviving rank within the step timeout
    # (its collective fails or the watchdog fires), srun within --wait + KillWait + 2 s more.
    assert survivor_s < STEP_TIMEOUT_S + 15, f"surviving rank ended {survivor_s:.0f} s after the node died"
    assert step_s < STEP_TIMEOUT_S + SRUN_WAIT_S + KILL_WAIT_S + 2 + 15, f"srun ended after {step_s:.0f} s"
    # srun named no exit for the dead node's task: the launcher blames that node, retries
    # from the checkpoint, and the retry avoids the node although it is back.
    assert re.search(rf"training failed with exit code \d+ .* on node\(s\) {victim} after writing "
                     r"step\d+; retrying from it", text), text[-6000:]
    assert f"the next run of job {job.id} avoids node(s) {victim}" in text
    rerun = re.findall(r"restart 1 on 2 node\(s\) \[([^\]]+)\]", text)
    assert len(rerun) == 1 and victim not in hostnames(cluster, rerun[0]), rerun
    assert_losses_equal_reference(job, jobs["reference"])


def test_the_shipped_1b2_optimizer_settings_resume_on_another_node_count(
        multinode_slurm: LocalSlurm, tmp_path: Path) -> None:
    # slurm/README.md promises that a run may resume on another number of nodes. The
    # shipped 1.2B settings (bf16, fp32 gradient accumulation, the config's ZeRO stage)
    # decide whether DeepSpeed can re-split the optimizer partitions: saved on 2 nodes
    # (DP 2), resumed on 1 (DP 1). See zero_resume_ranks.py for why a small model.
    def srun(phase: str, *layout: str) -> dict:
        done = subprocess.run(
            ["srun", *layout, "--cpus-per-task=1", "--time=10", sys.executable,
             str(REPO / "tests" / "slurm" / "zero_resume_ranks.py"), phase, str(tmp_path)],
            env={**multinode_slurm.env, "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(rendezvous_port())},
            cwd=REPO, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, f"{phase}: exit {done.returncode}\n{done.stderr[-4000:]}"
        return json.loads((tmp_path / f"{phase}.json").read_text())

    saved = srun("save", *TWO_NODES)
    resumed = srun("resume", "--nodes=1", "--ntasks=1")

    assert (saved["dp"], resumed["dp"]) == (2, 1)
    # bf16 ZeRO-2 runs on DeepSpeedZeroOptimizer, whose fp32 masters re-partition (bf16
    # ZeRO-1 would run on BF16_Optimizer, which cannot).
    assert (saved["zero_stage"], saved["optimizer"], saved["bf16"]) == (2, "DeepSpeedZeroOptimizer", True)
    # Every parameter's fp32 master weight and both Adam moments, exactly as saved.
    assert resumed["loaded"] == saved["saved"]
    # The same two global batches on one rank: the same result up to the order in which
    # the gradients of the micro-batches were summed.
    for name, (master, avg, avg_sq) in saved["after"].items():
        got = resumed["after"][name]
        for want, have in zip((master, avg, avg_sq), got, strict=True):
            assert torch.allclose(torch.tensor(have), torch.tensor(want), rtol=1e-4, atol=1e-6), name


def shard_settings(shard_dir: Path) -> tuple[Path, Path, dict[str, str], list[str]]:  # noqa: F811
    """Corpus, tokenizer, shard_corpus.sh environment and the equivalent shard.py flags.

    Small units, so the ~100 KB corpus is cut into several and both nodes get work.
    """
    corpus, tokenizer = shard_dir.parent / "corpus.jsonl", shard_dir.parent / "tokenizer.json"
    settings = {"SEQ_LENGTH": "32", "VAL_FRACTION": "0.1", "SHARD_SIZE_MB": "0.04",
                "UNIT_SIZE_MB": "0.02"}
    flags = ["--seq-length", "32", "--val-fraction", "0.1", "--shard-size-mb", "0.04",
             "--unit-size-mb", "0.02"]
    return corpus, tokenizer, settings, flags


def output_files(directory: Path) -> dict[str, bytes]:
    """Every file shard.py publishes (its resume state in .work/ aside), by relative path."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and ".work" not in p.relative_to(directory).parts}


def submit_shard_job(cluster: LocalSlurm, directory: Path, shard_dir: Path, output: Path,  # noqa: F811
                     *options: str, extra_args: str = "") -> int:
    corpus, tokenizer, settings, _ = shard_settings(shard_dir)
    return cluster.sbatch(REPO / "slurm" / "shard_corpus.sh", *TWO_NODES, "--open-mode=append",
                          f"--output={directory / 'shard.log'}", *options, cwd=REPO,
                          env={**settings, "INPUT": str(corpus), "TOKENIZER": str(tokenizer),
                               "OUTPUT_DIR": str(output), "PYTHON": sys.executable,
                               "EXTRA_ARGS": extra_args})


def test_shard_corpus_on_two_nodes_writes_the_bytes_of_one_process_and_a_requeue_keeps_units(
        multinode_slurm: LocalSlurm, shard_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    cluster = multinode_slurm
    corpus, tokenizer, _, flags = shard_settings(shard_dir)
    single = tmp_path / "single"
    subprocess.run([sys.executable, "data_prep/shard.py", "--input", str(corpus),
                    "--tokenizer", str(tokenizer), "--output", str(single), *flags,
                    "--no-progress"], cwd=REPO, check=True, capture_output=True, timeout=300)
    out, log = tmp_path / "srun", tmp_path / "shard.log"
    # --overwrite, as the script suggests for replacing an earlier output.
    job = submit_shard_job(cluster, tmp_path, shard_dir, out, extra_args="--overwrite")
    state = cluster.wait(job, timeout=240)

    assert state == "COMPLETED", log.read_text(errors="replace")[-4000:] if log.exists() else ""
    text = log.read_text(errors="replace")
    assert "ntasks=2" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["work_units"] >= 2
    assert output_files(out) == output_files(single)  # shards, lists, counts, manifest
    # Both nodes did work: each rank of the files-mode launch left its units' markers.
    units = sorted((out / ".work" / "units").glob("u*.json"))
    assert len(units) == manifest["work_units"]
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in units}
    shards_before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.tar")}

    # A requeue (what preemption, a node failure or the time limit do): the same job runs
    # again with the same --overwrite. It must resume, not delete what it finished.
    cluster._client("scontrol", "requeue", str(job))
    state = cluster.wait(job, timeout=240)
    assert state == "COMPLETED" and cluster.requeue_count(job) == 1, log.read_text()[-4000:]
    text = log.read_text(errors="replace")
    assert "was already cleared by an earlier run of Slurm job" in text, text[-4000:]
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
             for p in sorted((out / ".work" / "units").glob("u*.json"))}
    assert after == before  # every unit's marker untouched: no unit redone
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.tar")} == shards_before
    assert output_files(out) == output_files(single)

    # A new job with --overwrite still starts afresh (its own first run clears).
    again = submit_shard_job(cluster, tmp_path, shard_dir, out, extra_args="--overwrite")
    assert cluster.wait(again, timeout=240) == "COMPLETED", log.read_text()[-4000:]
    rewritten = {p.name: p.stat().st_mtime_ns for p in (out / ".work" / "units").glob("u*.json")}
    assert all(rewritten[name] != mtime for name, (_, mtime) in before.items())
    assert output_files(out) == output_files(single)
