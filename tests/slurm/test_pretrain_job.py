"""`sbatch slurm/pretrain_lev_1b2.sh` on a real local Slurm: runs, saves on the time-limit
signal, requeues itself, resumes bit for bit, fails cleanly, and gives srun ranks their layout.

Every job goes through the user-facing sbatch file with a tiny CPU model: the #SBATCH GPU
defaults are overridden on the command line (``--gpus-per-node=0`` is what a GPU-less node
accepts; ``--gres=none`` is rejected) and the environment picks config, data and overrides.
"""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import LocalSlurm

from tests.conftest import REPO
from tests.pretrain.conftest import shard_dir  # noqa: F401  (session fixture: tiny shards)
from tests.pretrain.train_helpers import TINY_MODEL, train_records

pytestmark = [pytest.mark.slurm, pytest.mark.multiproc]

SCRIPT = REPO / "slurm" / "pretrain_lev_1b2.sh"
STEPS = 120  # ~60 ms each here: the signal lands mid-run, well after step 1
# decay_steps is fixed, so the LR schedule (and the losses) do not depend on train_steps or
# on where a run was interrupted; no periodic saves: a resume must use the signal's save.
OVERRIDES = [*TINY_MODEL, f"train.train_steps={STEPS}", f"optimizer.decay_steps={STEPS}",
             "checkpoint.save_interval=0"]
CPU_JOB = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1",
           "--time=30"]  # minutes; longer than the 600 s signal lead of the #SBATCH line


def rendezvous_port() -> int:
    """A free port below the ephemeral range, for one job's rendezvous.

    Job ids restart at 1 in every local cluster, so the launcher's id-derived port could
    clash between test sessions; a port from the ephemeral range (what binding port 0
    gives) may be taken by an outgoing connection while the job is still pending.
    """
    low, _ = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(100):
        port = random.randrange(24000, min(low, 32768))
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 24000-32767")


def submit(slurm: LocalSlurm, tmp: Path, *options: str, env: dict[str, str] | None = None,
           script: Path = SCRIPT) -> Job:
    """sbatch ``script`` from the repository root, logging to ``tmp/job.log``."""
    tmp.mkdir(parents=True, exist_ok=True)
    job_env = {"ALLOW_LOCAL_SAVE_DIR": "1",  # pytest's tmp is node-local; all nodes see it here
               "MASTER_PORT": str(rendezvous_port()), "PYTHON": sys.executable, **(env or {})}
    # A job name per run, as the sbatch files ask (they run one job per name at a time:
    # --dependency=singleton); the tests' jobs would otherwise queue behind each other.
    name = f"--job-name=lev-test-{tmp.parent.name}-{tmp.name}"
    job = slurm.sbatch(script, *CPU_JOB, f"--output={tmp / 'job.log'}", name, *options,
                       env=job_env, cwd=REPO)
    return Job(slurm, job, tmp)


class Job:
    """A submitted job, its directory (SAVE_DIR is ``dir/run``) and its log."""

    def __init__(self, slurm: LocalSlurm, job_id: int, directory: Path) -> None:
        self.slurm, self.id, self.dir = slurm, job_id, directory
        self.save, self.log = directory / "run", directory / "job.log"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "<no log yet>"

    def finish(self, timeout: float = 420) -> tuple[str, str]:
        """Wait for the job's last run; (state, log text)."""
        state = self.slurm.wait(self.id, timeout=timeout)
        return state, self.text()


def train_env(data: Path, save: Path, *extra: str) -> dict[str, str]:
    return {"CONFIG": "pretrain/configs/tiny_lev.yaml", "DATA_PATH": str(data),
            "SAVE_DIR": str(save), "TRAIN_OVERRIDES": " ".join([*OVERRIDES, *extra])}


@pytest.fixture(scope="module")
def jobs(local_slurm: LocalSlurm, shard_dir: Path,  # noqa: F811
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Job]]:
    """The training jobs of this file, submitted together.

    Their time is mostly Python start-up (torch, megatron-core, DeepSpeed imports), so they
    overlap on the 8 declared CPUs; each test then checks one of them. Tests of this module
    use ``local_slurm`` rather than ``slurm``, whose per-test cancel would end the others.
    """
    root = tmp_path_factory.mktemp("pretrain_jobs")
    # The launcher's own srun, with PYTHON replaced by a probe that initialises the process
    # group as pretrain.train does and records what each rank's environment then says.
    probe = root / "probe_python"
    code = ("import json, os; from pretrain.runtime.distributed import init_distributed, "
            "destroy_distributed; layout = init_distributed(1, 0); "
            "keys = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE'); "
            "rec = {k: os.environ[k] for k in keys}; rec['launcher'] = layout.launcher; "
            f"open('{root}/probe/rank' + os.environ['RANK'] + '.json', 'w').write(json.dumps(rec)); "
            "destroy_distributed()")
    probe.write_text(f"#!/bin/bash\nexec {sys.executable} -c \"{code}\"\n")
    probe.chmod(0o755)
    submitted = {
        "preempted": submit(local_slurm, root / "preempted",
                            env=train_env(shard_dir, root / "preempted" / "run")),
        "uninterrupted": submit(local_slurm, root / "uninterrupted",
                                env=train_env(shard_dir, root / "uninterrupted" / "run")),
        # hidden_size 32 with 5 heads: a ConfigError before any model is built.
        "bad_config": submit(local_slurm, root / "bad_config",
                             env=train_env(shard_dir, root / "bad_config" / "run",
                                           "model.num_attention_heads=5")),
        "probe": submit(local_slurm, root / "probe", "--ntasks-per-node=3",
                        env={**train_env(shard_dir, root / "probe" / "run"),
                             "PYTHON": str(probe)}),
    }
    yield submitted
    local_slurm.cancel_all()


def test_usr1_before_time_limit_saves_requeues_and_resumes_bit_for_bit(
        jobs: dict[str, Job]) -> None:
    job = jobs["preempted"]
    deadline = time.monotonic() + 300
    while not ((job.save / "metrics.jsonl").exists() and train_records(job.save)):
        assert time.monotonic() < deadline, f"no step logged in 300 s:\n{job.text()[-4000:]}"
        assert job.slurm.state(job.id) in ("PENDING", "RUNNING"), job.text()[-4000:]
        time.sleep(0.05)

    # What `#SBATCH --signal=B:USR1@600` does before the time limit: USR1 to the batch shell only.
    job.slurm.signal(job.id, "USR1", batch_only=True)

    state, text = job.finish()
    assert state == "COMPLETED", text[-6000:]
    assert job.slurm.requeue_count(job.id) == 1, text[-6000:]
    # The signal travelled batch shell -> srun -> every rank, which saved before the last step.
    assert "got SIGUSR1: asking every rank to save and stop" in text
    for rank in (0, 1):
        assert f"[rank {rank}] WARNING pretrain.runtime.stopping: received SIGUSR1" in text, text[-6000:]
    assert "training exited with code 75" in text
    resumed = [line for line in text.splitlines() if "resumed from" in line]
    assert len(resumed) == 1, text[-6000:]
    stopped_at = int(resumed[0].split("(step ")[1].split(",")[0])
    assert 1 <= stopped_at < STEPS, f"the signal arrived after the last step: {resumed[0]}"
    # Every step's loss (and samples) equal the uninterrupted run's, bit for bit.
    reference_state, reference_log = jobs["uninterrupted"].finish()
    assert reference_state == "COMPLETED", reference_log[-6000:]
    reference, records = train_records(jobs["uninterrupted"].save), train_records(job.save)
    assert sorted(records) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert records[step]["sample_ids"] == reference[step]["sample_ids"], f"step {step}"
        assert records[step]["loss"] == reference[step]["loss"], (
            f"step {step}: {records[step]['loss']!r} != {reference[step]['loss']!r}")


def test_job_runs_every_step_to_completion_without_requeue(jobs: dict[str, Job]) -> None:
    job = jobs["uninterrupted"]
    state, text = job.finish()

    assert state == "COMPLETED", text[-6000:]
    assert job.slurm.requeue_count(job.id) == 0
    assert sorted(train_records(job.save)) == list(range(1, STEPS + 1))
    assert (job.save / "latest").read_text().strip() == f"step{STEPS:08d}"
    assert "launch_pretrain: finished" in text
    # The training's own record of how srun placed rank 0 (other ranks log warnings only).
    assert "rank 0/2 (local 0/2) via srun" in text


def test_bad_config_fails_once_with_the_error_in_the_log(jobs: dict[str, Job]) -> None:
    job = jobs["bad_config"]
    state, text = job.finish()

    assert state == "FAILED", text[-4000:]
    assert job.slurm.requeue_count(job.id) == 0
    assert job.slurm.job_info(job.id)["ExitCode"] == "2:0"
    # One line for the whole job (2 srun ranks), with the exit code srun passes on.
    assert text.count("ConfigError: model.hidden_size=32 is not divisible by "
                      "model.num_attention_heads=5") == 1, text[-4000:]
    assert "pretrain.train: error: ConfigError" in text and "(exit 2)" in text
    assert "Traceback" not in text
    assert "training failed with exit code 2" in text and "never retried" in text


def test_every_srun_rank_gets_rank_local_rank_and_world_sizes(jobs: dict[str, Job]) -> None:
    job = jobs["probe"]
    state, text = job.finish()

    assert state == "COMPLETED", text[-4000:]
    for rank in range(3):
        # One node: the local layout equals the global one.
        assert json.loads((job.dir / f"rank{rank}.json").read_text()) == {
            "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "3",
            "LOCAL_WORLD_SIZE": "3", "launcher": "srun"}


def test_node_local_save_dir_is_refused_before_launch(slurm: LocalSlurm, shard_dir: Path,  # noqa: F811
                                                      tmp_path: Path) -> None:
    job = submit(slurm, tmp_path, env={**train_env(shard_dir, tmp_path / "run"),
                                       "ALLOW_LOCAL_SAVE_DIR": "0"})
    state, text = job.finish(timeout=60)

    assert state == "FAILED" and slurm.requeue_count(job.id) == 0
    assert "is on node-local storage (/tmp)" in text and "ALLOW_LOCAL_SAVE_DIR=1" in text
    assert "training exited" not in text and not (tmp_path / "run").exists()


def test_shard_corpus_job_with_two_tasks_matches_a_single_process_run(
        slurm: LocalSlurm, shard_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    corpus, tokenizer = shard_dir.parent / "corpus.jsonl", shard_dir.parent / "tokenizer.json"
    # Small units, so the ~100 KB corpus is cut into several and both tasks get work.
    settings = {"SEQ_LENGTH": "32", "VAL_FRACTION": "0.1", "SHARD_SIZE_MB": "0.04",
                "UNIT_SIZE_MB": "0.02"}
    single = tmp_path / "single"
    subprocess.run([sys.executable, "data_prep/shard.py", "--input", str(corpus),
                    "--tokenizer", str(tokenizer), "--output", str(single),
                    "--seq-length", "32", "--val-fraction", "0.1", "--shard-size-mb", "0.04",
                    "--unit-size-mb", "0.02", "--no-progress"],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    log = tmp_path / "shard.log"
    job = slurm.sbatch(REPO / "slurm" / "shard_corpus.sh", "--nodes=1", "--ntasks-per-node=2",
                       f"--output={log}", cwd=REPO,
                       env={**settings, "INPUT": str(corpus), "TOKENIZER": str(tokenizer),
                            "OUTPUT_DIR": str(tmp_path / "srun"), "PYTHON": sys.executable})
    state = slurm.wait(job, timeout=180)

    assert state == "COMPLETED", log.read_text(errors="replace")[-4000:] if log.exists() else ""
    a = json.loads((single / "manifest.json").read_text())
    b = json.loads((tmp_path / "srun" / "manifest.json").read_text())
    assert a["work_units"] == b["work_units"] >= 2
    for split in ("train", "val"):
        for key in ("samples", "tokens", "tail_tokens_dropped"):
            assert b["splits"][split][key] == a["splits"][split][key], f"{split}.{key}"
    assert b["documents"] == a["documents"]
    assert b["fingerprint"] == a["fingerprint"]  # same shards, byte for byte



def test_the_exit_code_the_ranks_agreed_on_wins_over_sruns(slurm: LocalSlurm, shard_dir: Path,  # noqa: F811
                                                           tmp_path: Path) -> None:
    # Stand-in ranks with the training's side of the contract: rank 0 writes the code all
    # ranks agreed on (75: saved) to LEV_EXIT_CODE_FILE, then rank 1 is killed in its
    # teardown, so srun reports 128+9. The requeued run finishes (exit 0).
    ranks = tmp_path / "ranks_python"
    ranks.write_text("#!/bin/bash\n"
                     "if [ \"${SLURM_RESTART_COUNT:-0}\" -gt 0 ]; then exit 0; fi\n"
                     "if [ \"$SLURM_PROCID\" = 0 ]; then\n"
                     "  echo 75 > \"$LEV_EXIT_CODE_FILE.tmp\" && mv \"$LEV_EXIT_CODE_FILE.tmp\" \"$LEV_EXIT_CODE_FILE\"\n"
                     "  exit 75\nfi\n"
                     "sleep 2; kill -9 $$\n")
    ranks.chmod(0o755)
    job = submit(slurm, tmp_path, env={**train_env(shard_dir, tmp_path / "run"),
                                       "PYTHON": str(ranks), "SRUN_WAIT_S": "10"})
    state, text = job.finish(timeout=120)

    assert state == "COMPLETED", text[-4000:]
    assert slurm.requeue_count(job.id) == 1
    assert "task 1: Killed" in text
    assert re.search(r"training exited with code 75 \(agreed by the ranks; srun: (?!75\))\d+\)",
                     text), text[-4000:]
    assert "requeued job" in text and "launch_pretrain: finished" in text


def test_the_time_limits_term_after_its_usr1_during_a_slow_save_still_requeues(
        slurm: LocalSlurm, shard_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    # Stand-in ranks that take 4 s to "save" on USR1, then exit 75. The batch shell gets
    # USR1 (the time-limit warning), then TERM while the ranks save: the first signal
    # decides, so the job requeues instead of ending as a cancel.
    ready = tmp_path / "ready"
    ranks = tmp_path / "ranks_python"
    ranks.write_text("#!/bin/bash\n"
                     "if [ \"${SLURM_RESTART_COUNT:-0}\" -gt 0 ]; then exit 0; fi\n"
                     "trap 'sleep 4; exit 75' USR1\n"
                     f"touch {ready}.$SLURM_PROCID\n"
                     "while :; do sleep 0.1; done\n")
    ranks.chmod(0o755)
    job = submit(slurm, tmp_path, env={**train_env(shard_dir, tmp_path / "run"),
                                       "PYTHON": str(ranks)})
    deadline = time.monotonic() + 60
    while not all(Path(f"{ready}.{rank}").exists() for rank in (0, 1)):
        assert time.monotonic() < deadline, job.text()[-4000:]
        time.sleep(0.2)
    slurm.signal(job.id, "USR1", batch_only=True)
    time.sleep(1.5)
    slurm.signal(job.id, "TERM", batch_only=True)
    state, text = job.finish(timeout=120)

    assert state == "COMPLETED", text[-4000:]
    assert "got SIGTERM after SIGUSR1: ignored" in text
    assert "training exited with code 75" in text and "stopped on request" not in text
    assert slurm.requeue_count(job.id) == 1 and "launch_pretrain: finished" in text


def test_a_second_job_of_the_same_name_waits_for_the_first(slurm: LocalSlurm, shard_dir: Path,  # noqa: F811
                                                           tmp_path: Path) -> None:
    # The sbatch files' --dependency=singleton: one live job per name, so two submissions of
    # one run (one SAVE_DIR) never train at once.
    first = slurm.sbatch_wrap("sleep 300", "--job-name=lev-1b2-one-run", f"--output={tmp_path}/first.log")
    wait_until_running = time.monotonic() + 60
    while slurm.state(first) != "RUNNING":
        assert time.monotonic() < wait_until_running, slurm.job_info(first)
        time.sleep(0.2)
    second = submit(slurm, tmp_path / "second", "--job-name=lev-1b2-one-run",
                    env={**train_env(shard_dir, tmp_path / "run"), "DRY_RUN": "1"})
    time.sleep(3)  # several scheduler passes (sched_interval=1)

    info = slurm.job_info(second.id)
    assert (info["JobState"], info["Reason"], info["Dependency"]) == (
        "PENDING", "Dependency", "singleton(unfulfilled)"), info
    slurm._client("scancel", str(first))
    state, text = second.finish(timeout=60)
    assert state == "COMPLETED", text  # a dry run: it only prints the launch line
    assert "srun --kill-on-bad-exit=0" in text
