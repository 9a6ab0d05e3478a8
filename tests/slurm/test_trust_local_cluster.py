"""The local Slurm's directory is private before its root daemons write into it
(docs/trust.md): a directory someone else made, or a symlink planted at its name, is
refused before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from local_cluster import LocalSlurm, main


def test_a_symlink_at_the_cluster_directory_is_refused_and_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (tmp_path / "lev-local-slurm").symlink_to(victim)
    with pytest.raises(RuntimeError, match=r"lev-local-slurm is a symlink"):
        LocalSlurm(tmp_path / "lev-local-slurm").start()
    assert list(victim.iterdir()) == []


def test_a_pre_created_cluster_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "lev-local-slurm"
    planted.mkdir()
    planted.chmod(0o777)  # as a stranger's mkdir in /tmp would leave it
    with pytest.raises(RuntimeError, match=r"is open to others \(mode 0777\).*chmod 700"):
        LocalSlurm(planted).start()
    assert list(planted.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a directory to another user needs root")
def test_a_pre_created_cluster_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "lev-local-slurm"
    planted.mkdir(mode=0o700)
    os.chown(planted, 4242, 4242)
    with pytest.raises(RuntimeError, match=r"is owned by uid 4242"):
        LocalSlurm(planted).start()
    assert list(planted.iterdir()) == []


def test_stop_without_a_directory_asks_for_the_one_start_printed(capsys, monkeypatch) -> None:
    monkeypatch.delenv("LEV_LOCAL_SLURM_DIR", raising=False)
    with pytest.raises(SystemExit) as stopped:
        main(["stop"])
    assert stopped.value.code == 2
    assert "stop needs --dir" in capsys.readouterr().err
