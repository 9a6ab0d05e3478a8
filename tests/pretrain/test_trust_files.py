"""What a run writes in its save_dir cannot be redirected or opened by others (docs/trust.md).

One real 2-step run starts in a save_dir that everyone can write, under umask 000, with
symlinks planted at the fixed temporary names older code wrote through (``.latest.tmp``,
``.heartbeats/rank0.json.tmp``), each pointing at a file outside.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from pretrain.checkpoint.lease import LEASE, SaveDirLease
from pretrain.runtime.exit_code import publish_exit_code
from tests.pretrain.train_helpers import run_training

VICTIM = "precious\n"
PLANTED = (".latest.tmp", ".heartbeats/rank0.json.tmp")


@pytest.fixture(scope="module")
def planted_run(shard_dir, tmp_path_factory) -> tuple[Path, list[Path]]:
    """(save_dir, victims) after the run."""
    root = tmp_path_factory.mktemp("planted")
    save = root / "run"
    save.mkdir()
    save.chmod(0o777)
    victims = []
    for i, name in enumerate(PLANTED):
        victim = root / f"victim{i}"
        victim.write_text(VICTIM)
        (save / name).parent.mkdir(exist_ok=True)
        (save / name).symlink_to(victim)
        victims.append(victim)
    old = os.umask(0)  # the ranks inherit it: the most permissive a user could have
    try:
        run_training(1, save, shard_dir, "train.train_steps=2", "checkpoint.save_interval=2")
    finally:
        os.umask(old)
    return save, victims


@pytest.mark.multiproc
def test_symlinks_planted_at_temporary_names_do_not_redirect_the_runs_writes(planted_run):
    save, victims = planted_run
    assert [v.read_text() for v in victims] == [VICTIM] * len(victims)
    assert (save / "latest").read_text() == "step00000002\n"


@pytest.mark.multiproc
def test_checkpoint_files_are_closed_to_others_and_to_group_writes_under_umask_000(planted_run):
    save, _ = planted_run
    made = [p for p in (save / "step00000002").iterdir() if not p.is_symlink()]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in made}
    assert modes and all(m & 0o027 == 0 for m in modes.values()), modes
    assert stat.S_IMODE((save / "step00000002").stat().st_mode) & 0o027 == 0


@pytest.mark.multiproc
def test_a_save_dir_others_can_write_is_reported_at_start_up(planted_run):
    save, _ = planted_run
    log = (save.parent / "run-logs" / "rank0.log").read_text()
    assert f"checkpoint.save_dir={save} can be written by every user" in log


def test_publishing_an_exit_code_does_not_write_through_a_planted_symlink(tmp_path,
                                                                          monkeypatch):
    victim, target = tmp_path / "victim", tmp_path / "exit_code.run0"
    victim.write_text(VICTIM)
    (tmp_path / "exit_code.run0.rank0.tmp").symlink_to(victim)
    monkeypatch.setenv("LEV_EXIT_CODE_FILE", str(target))
    assert publish_exit_code(2, rank=0, collective=False)
    assert victim.read_text() == VICTIM and target.read_text() == "2\n"


def test_a_lease_renewed_far_in_the_future_is_taken_over(tmp_path):
    (tmp_path / LEASE).write_text(json.dumps({"job": "planted", "host": "node12", "pid": 4242,
                                              "renewed": time.time() + 10 * 365 * 86400}))
    lease = SaveDirLease(tmp_path, timeout_s=1.5, job="slurm job 1002")
    lease.acquire()
    assert json.loads((tmp_path / LEASE).read_text())["job"] == "slurm job 1002"
    lease.release()
