"""Any rank count (mpiexec, or srun without an MPI world) gives the same shards and documents."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from dp_helpers import DATA_PREP, ENV, load_split_stream, run_tool, shard_args

CLEAN_FLAGS = ("--unit-size-mb", "0.25", "--shard-size-mb", "0.1", "--val-fraction", "0.1")


def _documents(out, split: str, eod: int) -> list[bytes]:
    """The split's documents as token-byte strings (cut at EOD; partial ends included)."""
    stream = load_split_stream(out, split)
    cuts = np.flatnonzero(stream == eod)
    return sorted(part.tobytes() for part in np.split(stream, cuts + 1) if len(part))


def _assert_same_as_clean(out, clean_run):
    got, want = (json.loads((d / "manifest.json").read_text()) for d in (out, clean_run))
    assert got["documents"] == want["documents"]
    for split in ("train", "val"):
        for key in ("samples", "tokens", "tail_tokens_dropped"):
            assert got["splits"][split][key] == want["splits"][split][key]
        eod = want["tokenizer"]["eod_id"]
        assert _documents(out, split, eod) == _documents(clean_run, split, eod)
    assert got == want  # and in fact byte-identical shards (same fingerprint)


@pytest.mark.multiproc
def test_two_mpi_ranks_match_one_rank(tmp_path, mixed_corpus, tokenizer, clean_run):
    out = tmp_path / "shards"
    proc = run_tool("shard.py", *shard_args([mixed_corpus], tokenizer, out, *CLEAN_FLAGS), ranks=2)
    assert "over 2 rank(s) (mpi mode)" in proc.stderr
    _assert_same_as_clean(out, clean_run)


@pytest.mark.multiproc
def test_srun_style_ranks_without_mpi_world_merge_through_files(
    tmp_path, mixed_corpus, tokenizer, clean_run
):
    out = tmp_path / "shards"
    args = [
        sys.executable,
        str(DATA_PREP / "shard.py"),
        *shard_args([mixed_corpus], tokenizer, out, *CLEAN_FLAGS),
    ]
    procs = []
    for rank in (1, 0):  # rank 1 first: it must wait for rank 0 to prepare the directory
        env = {
            **ENV,
            "SLURM_NTASKS": "2",
            "SLURM_PROCID": str(rank),
            "SLURM_JOB_ID": "42",
            "SLURM_STEP_ID": "0",
            "LEV_SHARD_NO_MPI": "1",
        }
        procs.append(
            subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "over 2 rank(s) (files mode)" in outputs[1][1]
    _assert_same_as_clean(out, clean_run)
