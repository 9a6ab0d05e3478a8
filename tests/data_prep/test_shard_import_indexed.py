"""Megatron-LM / GPT-NeoX ``.bin/.idx`` datasets become shards without re-tokenizing.

The datasets are written by megatron-core's own ``IndexedDatasetBuilder`` from the real
corpus tokenized with the real tokenizer, and read back through the training loader.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from dp_helpers import SEQ, read_zst_lines, run_tool, shard_args
from tokenizers import Tokenizer

from data_prep.packing import is_val_ids

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # megatron.core: TE / Apex absent
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder


def corpus_ids(pile_corpus: Path, tokenizer: Path) -> list[list[int]]:
    tok = Tokenizer.from_file(str(tokenizer))
    texts = [json.loads(line)["text"] for line in read_zst_lines(pile_corpus / "00.jsonl.zst")]
    return [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=False)]


def build(prefix: Path, docs: list[list[int]], eod: int, *, dtype=np.uint16) -> None:
    """Half the documents carry their EOD (``--append-eod``), half not; document 1 is two
    sequences (``--split-sentences``); document 2 is empty."""
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for i, ids in enumerate(docs):
        if i == 1:
            half = len(ids) // 2
            builder.add_item(torch.tensor(ids[:half]))
            builder.add_item(torch.tensor(ids[half:] + [eod]))
            builder.end_document()
            continue
        body = ids + [eod] if i % 2 == 0 else ids
        builder.add_document(torch.tensor(body, dtype=torch.int64), [len(body)])
    builder.finalize(f"{prefix}.idx")


@pytest.fixture(scope="module")
def megatron_dataset(tmp_path_factory, pile_corpus, tokenizer) -> tuple[Path, list[list[int]], int]:
    docs = corpus_ids(pile_corpus, tokenizer)
    docs[2] = []
    eod = Tokenizer.from_file(str(tokenizer)).token_to_id("<|endoftext|>")
    prefix = tmp_path_factory.mktemp("megatron") / "pile_text_document"
    build(prefix, docs, eod)
    return prefix, docs, eod


def train_stream(out: Path) -> np.ndarray:
    """Every train sample in sample-id order, through the training loader."""
    from pretrain.data.shards import open_split

    with open_split(out, "train", seq_length=SEQ, vocab_size=1024) as split:
        return split.read(np.arange(len(split))).ravel().astype(np.int64)


def test_import_keeps_the_token_stream_and_documents(tmp_path, megatron_dataset, tokenizer):
    prefix, docs, eod = megatron_dataset
    out = tmp_path / "out"
    # Megatron's own --data-path spelling (the PREFIX), one unit: the whole stream in order.
    run_tool("shard.py", *shard_args([prefix], tokenizer, out, "--val-fraction", "0",
                                     "--unit-size-mb", "1000"))
    expected = np.array([t for ids in docs if ids for t in [*ids, eod]], dtype=np.int64)
    got = train_stream(out)
    assert len(got) == (len(expected) // (SEQ + 1)) * (SEQ + 1)
    np.testing.assert_array_equal(got, expected[:len(got)])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"]["read"] == len(docs)
    assert manifest["documents"]["kept"] == len(docs) - 1
    assert manifest["documents"]["skipped"]["empty_document"]["count"] == 1
    assert manifest["documents"]["skipped"]["empty_document"]["examples"] == [
        f"{prefix}.bin:document 2"]
    (entry,) = manifest["imported"]
    assert entry["path"] == f"{prefix}.idx" and entry["documents"] == [0, len(docs)]
    assert entry["bin_sha256"] == hashlib.sha256(Path(f"{prefix}.bin").read_bytes()).hexdigest()


@pytest.mark.multiproc
def test_import_output_is_the_same_for_any_rank_count(tmp_path, megatron_dataset, tokenizer):
    prefix, docs, _ = megatron_dataset
    flags = ("--val-fraction", "0.1", "--unit-size-mb", "0.02")
    run_tool("shard.py", *shard_args([f"{prefix}.idx"], tokenizer, tmp_path / "one", *flags))
    run_tool("shard.py", *shard_args([f"{prefix}.bin"], tokenizer, tmp_path / "two", *flags),
             ranks=2)
    one, two = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("one", "two"))
    assert one["work_units"] > 2 and one["fingerprint"] == two["fingerprint"]
    val_docs = sum(is_val_ids(np.array(ids), 0.1) for ids in docs if ids)
    assert 0 < one["documents"]["kept_val"] == val_docs
    assert [e["documents"] for e in one["imported"]] == [e["documents"] for e in two["imported"]]


def test_ids_outside_the_vocabulary_are_refused_naming_the_document(tmp_path, tokenizer):
    prefix = tmp_path / "other_tokenizer"
    build(prefix, [[5, 6, 7], [8, 9], [1, 2], [10, 4999, 11]], eod=0)
    out = tmp_path / "out"
    proc = run_tool("shard.py", *shard_args([prefix], tokenizer, out, "--val-fraction", "0"),
                    check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"{prefix}.bin document 3 holds token id 4999" in proc.stderr
    assert "import with the tokenizer this dataset was made with" in proc.stderr
    assert not (out / "manifest.json").exists()


def test_a_bin_without_its_idx_is_refused(tmp_path, tokenizer):
    (tmp_path / "alone.bin").write_bytes(b"\0" * 64)
    proc = run_tool("shard.py", *shard_args([tmp_path / "alone.bin"], tokenizer, tmp_path / "o"),
                    check=False)
    assert proc.returncode == 2 and "has no .idx beside it" in proc.stderr
