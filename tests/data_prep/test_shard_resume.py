"""kill -9 at any moment, then rerun: same result as a clean run, finished work not redone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from dp_helpers import DATA_PREP, ENV, run_tool, shard_args

CLEAN_FLAGS = ("--unit-size-mb", "0.25", "--shard-size-mb", "0.1", "--val-fraction", "0.1")


def _markers(out):
    units = out / ".work" / "units"
    return {p.name: p.stat().st_mtime_ns for p in units.glob("u*.json")} if units.is_dir() else {}


@pytest.mark.multiproc
def test_rerun_after_kill_9_matches_clean_run_without_redoing_units(
    tmp_path, mixed_corpus, tokenizer, clean_run
):
    out = tmp_path / "shards"
    args = shard_args([mixed_corpus], tokenizer, out, *CLEAN_FLAGS)
    proc = subprocess.Popen(
        [sys.executable, str(DATA_PREP / "shard.py"), *args],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not _markers(out) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _markers(out)
    n_units = json.loads((clean_run / "manifest.json").read_text())["work_units"]
    assert 0 < len(done_before) < n_units, "kill landed outside the run; the test proves nothing"
    assert not (out / "manifest.json").exists()

    run_tool("shard.py", *args)
    assert json.loads((out / "manifest.json").read_text()) == json.loads(
        (clean_run / "manifest.json").read_text()
    )
    after = _markers(out)
    assert {k: after[k] for k in done_before} == done_before  # finished units were not redone
    assert not list(out.rglob("*.tmp*"))
    listed = {
        s["path"]
        for sp in ("train", "val")
        for s in json.loads((out / "manifest.json").read_text())["splits"][sp]["shards"]
    }
    assert {
        str(p.relative_to(out)) for p in out.glob("*/*.tar")
    } == listed  # no stray or duplicate shards


def test_rerun_of_a_finished_run_changes_nothing(tmp_path, clean_run, mixed_corpus, tokenizer):
    from dp_helpers import copy_run

    out = copy_run(clean_run, tmp_path / "shards")
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.tar")}
    run_tool("shard.py", *shard_args([mixed_corpus], tokenizer, out, *CLEAN_FLAGS))
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.tar")} == before
    assert (out / "manifest.json").read_text() == (clean_run / "manifest.json").read_text()


def test_overwrite_starts_afresh(tmp_path, clean_run, mixed_corpus, tokenizer):
    from dp_helpers import copy_run

    out = copy_run(clean_run, tmp_path / "shards")
    stale = out / "train" / "u999999-00000.tar"
    stale.write_bytes(b"stale")
    run_tool("shard.py", *shard_args([mixed_corpus], tokenizer, out, *CLEAN_FLAGS, "--overwrite"))
    assert not stale.exists()
    assert (out / "manifest.json").read_text() == (clean_run / "manifest.json").read_text()
