"""Helpers for the data_prep tests: run the real CLIs, read shards back.

(A uniquely named module rather than conftest imports: several test dirs have a conftest.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import zstandard

REPO = Path(__file__).resolve().parents[2]
DATA_PREP = REPO / "data_prep"
#: One tokenizer thread per process: the machine is shared and rank counts must be comparable.
ENV = {**os.environ, "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
SEQ = 128


def run_tool(script: str, *args: str, ranks: int = 0, env: dict | None = None, check: bool = True):
    """Run ``data_prep/<script>`` as users do (under ``mpiexec -n ranks`` when ranks > 0)."""
    cmd = [sys.executable, str(DATA_PREP / script), *map(str, args)]
    if ranks:
        cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def shard_args(inputs, tokenizer, out, *extra) -> list[str]:
    return [
        "--input",
        *map(str, inputs),
        "--tokenizer",
        str(tokenizer),
        "--output",
        str(out),
        "--seq-length",
        str(SEQ),
        "--no-progress",
        *map(str, extra),
    ]


def read_zst_lines(path: Path) -> list[bytes]:
    with open(path, "rb") as fh:
        data = zstandard.ZstdDecompressor().stream_reader(fh).read()
    return data.splitlines()


def load_split_stream(out: Path, split: str) -> np.ndarray:
    """All samples of a split, in wids order, concatenated (dtype from the manifest)."""
    manifest = json.loads((out / "manifest.json").read_text())
    dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
    index = json.loads((out / f"{split}.wids.json").read_text())
    parts = []
    for entry in index["shardlist"]:
        with tarfile.open(out / entry["url"]) as tar:
            for member in tar:
                parts.append(np.frombuffer(tar.extractfile(member).read(), dtype=dtype))
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
