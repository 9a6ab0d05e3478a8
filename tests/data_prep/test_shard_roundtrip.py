"""Decoding the shards gives back exactly the kept documents' tokens, EOD-separated."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
from dp_helpers import SEQ, load_split_stream, read_zst_lines, run_tool, shard_args
from tokenizers import Tokenizer

from data_prep.packing import is_val


def _documents_in_plan_order(corpus) -> list[str]:
    """Read the mixed corpus independently of data_prep.readers, in sorted-path order."""
    docs = [json.loads(line)["text"] for line in read_zst_lines(corpus / "00.jsonl.zst")]
    docs += [json.loads(line)["text"] for line in (corpus / "01.jsonl").read_bytes().splitlines()]
    docs += pq.read_table(corpus / "02.parquet").column("text").to_pylist()
    docs += [p.read_text(encoding="utf-8") for p in sorted((corpus / "txt").iterdir())]
    return docs


def test_shards_decode_to_the_kept_documents_tokenization(tmp_path, mixed_corpus, tokenizer):
    out = tmp_path / "shards"
    # One work unit: the whole corpus is one stream per split.
    run_tool(
        "shard.py",
        *shard_args(
            [mixed_corpus], tokenizer, out, "--val-fraction", "0.2", "--shard-size-mb", "0.05",
            "--unit-size-mb", "256",
        ),
    )
    manifest = json.loads((out / "manifest.json").read_text())
    tok = Tokenizer.from_file(str(tokenizer))
    eod = tok.token_to_id("<|endoftext|>")
    docs = _documents_in_plan_order(mixed_corpus)
    assert manifest["documents"]["read"] == manifest["documents"]["kept"] == len(docs)
    for split in ("train", "val"):
        expected: list[int] = []
        kept = [d for d in docs if is_val(d, 0.2) == (split == "val")]
        for enc in tok.encode_batch(kept, add_special_tokens=False):
            expected += [*enc.ids, eod]
        n_full = len(expected) // (SEQ + 1) * (SEQ + 1)
        got = load_split_stream(out, split)
        assert manifest["splits"][split]["tail_tokens_dropped"] == len(expected) - n_full
        assert manifest["documents"][f"kept_{split}"] == len(kept)
        np.testing.assert_array_equal(got, np.array(expected[:n_full]))
        assert len(manifest["splits"][split]["shards"]) > 1  # size limit cut several shards


def test_samples_are_fixed_size_members_with_dotless_unique_keys(clean_run):
    manifest = json.loads((clean_run / "manifest.json").read_text())
    keys = set()
    for split in ("train", "val"):
        for shard in manifest["splits"][split]["shards"]:
            with tarfile.open(clean_run / shard["path"]) as tar:
                for member in tar:
                    key, ext = member.name.split(".")
                    assert ext == "tokens" and len(key) <= 64 and key not in keys
                    assert member.size == (SEQ + 1) * 2 and member.mtime == 0 and member.uid == 0
                    keys.add(key)
    assert (
        len(keys) == manifest["splits"]["train"]["samples"] + manifest["splits"]["val"]["samples"]
    )


def test_token_counts_are_the_train_split_unigram_counts(clean_run):
    manifest = json.loads((clean_run / "manifest.json").read_text())
    counts = np.load(clean_run / "token_counts.npy")
    train = load_split_stream(clean_run, "train")
    assert counts.dtype == np.int64 and counts.shape == (manifest["tokenizer"]["vocab_size"],)
    np.testing.assert_array_equal(counts, np.bincount(train, minlength=counts.shape[0]))


def test_wids_lists_match_manifest_sorted_by_url(clean_run):
    manifest = json.loads((clean_run / "manifest.json").read_text())
    for split in ("train", "val"):
        index = json.loads((clean_run / f"{split}.wids.json").read_text())
        assert index["__kind__"] == "wids-shard-index-v1" and index["name"] == split
        urls = [s["url"] for s in index["shardlist"]]
        assert urls == sorted(urls)
        assert [(s["path"], s["samples"]) for s in manifest["splits"][split]["shards"]] == [
            (s["url"], s["nsamples"]) for s in index["shardlist"]
        ]
