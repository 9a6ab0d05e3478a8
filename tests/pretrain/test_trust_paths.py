"""Paths listed in a shard directory stay inside it (docs/trust.md).

A shard list is data someone else may have prepared: an entry ``../x.tar`` or ``/etc/...``
must be refused by name (exit 78) before anything outside the directory is opened, by the
loader, by ``data_prep/verify.py`` and by ``pretrain.train``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.paths import PathOutsideError
from pretrain.data.shards import TokenShardDataset
from tests.conftest import REPO, cpu_env, rank_logs
from tests.pretrain.train_helpers import run_training


def list_first_shard_as(data: Path, entry: str) -> None:
    """Make ``train.wids.json`` and the manifest list their first shard under ``entry``;
    the shard's bytes are put there too, so a reader that follows the entry succeeds."""
    first = json.loads((data / "train.wids.json").read_text())["shardlist"][0]["url"]
    target = (data / entry) if not entry.startswith("/") else None
    if target is not None:
        shutil.copy(data / first, target)
    index = json.loads((data / "train.wids.json").read_text())
    index["shardlist"][0]["url"] = entry
    (data / "train.wids.json").write_text(json.dumps(index))
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["path"] = entry
    (data / "manifest.json").write_text(json.dumps(manifest))


def test_a_shard_list_entry_leaving_the_directory_is_refused_by_name(shard_copy):
    list_first_shard_as(shard_copy, "../x.tar")
    with pytest.raises(PathOutsideError, match=r"train\.wids\.json: entry '\.\./x\.tar' leads "
                                               r"outside"):
        TokenShardDataset(shard_copy, "train")


def test_an_absolute_shard_list_entry_is_refused_by_name(shard_copy):
    list_first_shard_as(shard_copy, "/etc/hostname")
    with pytest.raises(PathOutsideError, match=r"entry '/etc/hostname' is not a relative path"):
        TokenShardDataset(shard_copy, "train")


def test_verify_refuses_a_manifest_entry_leaving_the_directory_with_exit_78(shard_copy):
    list_first_shard_as(shard_copy, "../x.tar")
    done = subprocess.run([sys.executable, "data_prep/verify.py", str(shard_copy)], cwd=REPO,
                          env=cpu_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 78, done.stdout + done.stderr
    assert "entry '../x.tar' leads outside" in done.stderr


@pytest.mark.multiproc
def test_training_on_a_shard_list_leaving_its_directory_exits_78(shard_copy, tmp_path):
    list_first_shard_as(shard_copy, "../x.tar")
    save = tmp_path / "run"
    run_training(1, save, shard_copy, "train.train_steps=1", expect=78)
    logs = rank_logs(tmp_path / "run-logs")
    assert "PathOutsideError" in logs and "'../x.tar' leads outside" in logs
    assert not (save / "latest").exists()


@pytest.mark.parametrize("files", [["model.pt"], {"model.pt": 12}, {"model.pt": {"crc32": "0"}}])
def test_a_malformed_file_list_in_meta_json_is_damage_not_a_traceback(tmp_path, files):
    from pretrain.checkpoint.manager import verify_tag_files

    (tmp_path / "model.pt").write_bytes(b"x" * 12)
    check = verify_tag_files(tmp_path, files, rank=0, world_size=1)
    assert check.damage and "meta.json" in check.damage[0] and not check.io_errors
