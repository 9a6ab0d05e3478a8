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


def _srun_style(out, inputs, tokenizer, *, restart: int, tokenizers=None, extra=()):
    """Launch ranks 1 and 0 as Slurm would without an MPI world (job 42, step 0)."""
    procs = []
    for rank in (1, 0):
        tok = (tokenizers or {}).get(rank, tokenizer)
        env = {**ENV, "SLURM_NTASKS": "2", "SLURM_PROCID": str(rank), "SLURM_JOB_ID": "42",
               "SLURM_STEP_ID": "0", "SLURM_RESTART_COUNT": str(restart),
               "LEV_SHARD_NO_MPI": "1"}
        args = [sys.executable, str(DATA_PREP / "shard.py"),
                *shard_args(inputs, tok, out, *CLEAN_FLAGS, *extra)]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    return {1: (procs[0].returncode, outputs[0][1]), 0: (procs[1].returncode, outputs[1][1])}


@pytest.mark.multiproc
def test_a_requeued_job_is_not_misled_by_the_markers_of_the_attempt_it_replaces(
    tmp_path, mixed_corpus, tokenizer, clean_run
):
    out = tmp_path / "shards"
    # Attempt 0: rank 1's node cannot see the tokenizer; both ranks stop, exit 2, and a
    # failure marker stays behind in the output directory.
    first = _srun_style(out, [mixed_corpus], tokenizer, restart=0,
                        tokenizers={1: tmp_path / "not-mounted" / "tokenizer.json"})
    assert first[1][0] == 2 and first[0][0] == 2, first
    assert "other ranks failed: rank 1: cannot read --tokenizer" in first[0][1]
    assert any(p.name.startswith("failed.") for p in (out / ".work" / "ranks").iterdir())
    # The requeue (same job id and step, restart count 1) resumes and matches a clean run.
    second = _srun_style(out, [mixed_corpus], tokenizer, restart=1)
    assert second[0][0] == 0 and second[1][0] == 0, second
    assert "marker(s) of earlier launches" in second[0][1]
    _assert_same_as_clean(out, clean_run)


@pytest.mark.multiproc
def test_ranks_that_see_different_inputs_stop_before_writing(tmp_path, mixed_corpus, tokenizer):
    out = tmp_path / "shards"
    extra = tmp_path / "only-on-rank-1.jsonl"
    extra.write_text(json.dumps({"text": "A document only one node can see."}) + "\n")
    shard = [sys.executable, str(DATA_PREP / "shard.py")]
    # MPMD: the two ranks of one MPI world get different --input lists.
    cmd = ["mpiexec", "-n", "1", *shard, *shard_args([mixed_corpus], tokenizer, out), ":",
           "-n", "1", *shard, *shard_args([mixed_corpus, extra], tokenizer, out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "ranks [1] planned other work units than rank 0" in proc.stderr
    assert not list((out / "train").glob("*.tar")) and not (out / "manifest.json").exists()


@pytest.mark.multiproc
def test_a_small_corpus_gives_every_rank_work_by_default(tmp_path, pile_corpus, tokenizer):
    from dp_helpers import read_zst_lines

    lines = read_zst_lines(pile_corpus / "00.jsonl.zst")
    corpus = tmp_path / "small.jsonl"
    with open(corpus, "wb") as fh:  # ~3 MB: one unit under the old fixed 256 MB default
        while fh.tell() < 3 << 20:
            fh.write(b"\n".join(lines) + b"\n")
    out = tmp_path / "shards"
    run_tool("shard.py", *shard_args([corpus], tokenizer, out, "--val-fraction", "0.2"), ranks=2)
    markers = [json.loads(p.read_text()) for p in (out / ".work" / "units").glob("u*.json")]
    assert len(markers) >= 3
    assert {m["done_by_rank"] for m in markers} == {0, 1}
