"""verify.py passes a good directory and names the shard that was damaged."""

from __future__ import annotations

import json

from dp_helpers import copy_run, run_tool


def _first_train_shard(out):
    return json.loads((out / "manifest.json").read_text())["splits"]["train"]["shards"][0]["path"]


def test_verify_accepts_an_untouched_run(clean_run):
    proc = run_tool("verify.py", clean_run)
    assert proc.stdout.startswith("OK ")


def test_verify_catches_a_flipped_byte(tmp_path, clean_run):
    out = copy_run(clean_run, tmp_path / "shards")
    shard = _first_train_shard(out)
    data = bytearray((out / shard).read_bytes())
    data[512 + 10] ^= 0x01  # a token byte of the first sample
    (out / shard).write_bytes(bytes(data))
    proc = run_tool("verify.py", out, check=False)
    assert proc.returncode == 1
    assert f"MISMATCH {shard}: sha256" in proc.stdout


def test_verify_catches_a_truncated_shard(tmp_path, clean_run):
    out = copy_run(clean_run, tmp_path / "shards")
    shard = _first_train_shard(out)
    data = (out / shard).read_bytes()
    (out / shard).write_bytes(data[: len(data) // 2])
    proc = run_tool("verify.py", out, check=False)
    assert proc.returncode == 1
    assert f"MISMATCH {shard}: sha256" in proc.stdout
    assert f"{shard}: " in proc.stdout.split("sha256", 1)[1]  # and a count/tar problem too


def test_verify_reports_progress_and_a_summary(clean_run):
    proc = run_tool("verify.py", clean_run, "--log-every-s", "0.000001")
    lines = [line for line in proc.stderr.splitlines() if "progress:" in line]
    assert lines and "shards/s" in lines[-1] and "ETA " in lines[-1]
    assert "checked " in proc.stderr and " shards (" in proc.stderr
