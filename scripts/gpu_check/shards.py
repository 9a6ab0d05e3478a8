"""The ``data`` part: corpus -> tokenizer -> shards with data_prep, as users make them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .plan import TOKENIZER_VOCAB
from .runner import Limit, Runner

__all__ = ["part_data", "small_run_seq_length", "write_corpus"]


def small_run_seq_length(dry_run: bool) -> int:
    """The small run's sequence length: tiny_lev.yaml's on the GPU, the tests' in the dry run."""
    return 32 if dry_run else 128


def write_corpus(path: Path, max_chars: int = 600_000) -> tuple[int, int]:
    """A jsonl corpus of this Python's standard-library sources, paragraph per document
    (the tests' shard fixture does the same): real text, on every host, offline.

    Returns ``(documents, characters)``.
    """
    docs, chars = [], 0
    for source in sorted(Path(os.__file__).parent.glob("*.py")):
        for para in source.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            if len(para.strip()) > 40:
                docs.append(para.strip())
                chars += len(docs[-1])
        if chars >= max_chars:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return len(docs), chars


def part_data(runner: Runner, limit: Limit) -> tuple[str, dict[str, Any]]:
    """Train a tokenizer and write shards under the work dir (CPU only)."""
    corpus, tokenizer, shards = (runner.work / n for n in ("corpus", "tokenizer.json", "shards"))
    for path in (corpus, shards):
        shutil.rmtree(path, ignore_errors=True)
    documents, chars = write_corpus(corpus / "stdlib.jsonl")
    seq_length = small_run_seq_length(runner.dry_run)
    runner.python("data", ["data_prep/train_tokenizer.py", "--input", corpus, "--output",
                           tokenizer, "--vocab-size", TOKENIZER_VOCAB, "--val-fraction",
                           "0.05"], limit())
    runner.python("data", ["data_prep/shard.py", "--input", corpus, "--tokenizer", tokenizer,
                           "--output", shards, "--seq-length", seq_length, "--val-fraction",
                           "0.05", "--shard-size-mb", "1", "--no-progress"], limit())
    manifest = json.loads((shards / "manifest.json").read_text())
    return "pass", {"documents": documents, "characters": chars, "shards": str(shards),
                    "seq_length": seq_length,
                    "samples": {k: v["samples"] for k, v in manifest["splits"].items()}}
