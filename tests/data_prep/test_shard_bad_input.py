"""Bad input is counted per reason, with locations, and never stops the job."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from dp_helpers import run_tool, shard_args

GOOD = [{"text": f"Good document number {i}. To be, or not to be."} for i in range(8)]


def _jsonl(rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "corpus"
    root.mkdir()
    (root / "a.jsonl").write_bytes(
        _jsonl(
            [
                GOOD[0],  # 1 kept
                {"text": GOOD[1]["text"], "meta": {}},  # 2 kept
                b'{"text": "broken',  # 3 malformed_json
                b'{"text": "caf\xff"}',  # 4 invalid_utf8 (bytes)
                {"title": "no text here"},  # 5 missing_text_key
                {"text": 42},  # 6 non_string_text
                {"text": "   \n\t "},  # 7 empty_text
                b"",  # 8 blank_line
                [1, 2],  # 9 not_an_object
                b'{"text": "\\ud800 lone surrogate"}',  # 10 invalid_utf8 (JSON escape)
                {"text": None},  # 11 non_string_text
            ]
        )
    )
    cctx = zstandard.ZstdCompressor()
    frame2 = cctx.compress(_jsonl(GOOD[5:7]))
    # 3 docs in a whole frame, then a frame cut in half: the half frame is one lost record.
    (root / "b.jsonl.zst").write_bytes(
        cctx.compress(_jsonl(GOOD[2:5])) + frame2[: len(frame2) // 2]
    )
    (root / "c.jsonl.zst").write_bytes(b"this is not a zstd stream at all\n" * 4)  # corrupt_zst
    os.symlink(root / "does-not-exist.jsonl", root / "gone.jsonl")  # unreadable_file
    (root / "bad.parquet").write_bytes(b"PAR1 garbage, not a parquet file")  # unreadable_file
    (root / "empty.txt").write_text("  \n\n  ")  # empty_text
    (root / "latin1.txt").write_bytes("Fran\xe7ois".encode("latin-1"))  # invalid_utf8
    (root / "good.txt").write_text(GOOD[7]["text"])  # kept
    (root / "notes.md").write_text("# not an input format")  # unsupported_file
    pq.write_table(pa.table({"text": ["Good parquet row.", None, "  "]}), root / "d.parquet")
    pq.write_table(pa.table({"body": ["no text column", "still none"]}), root / "e.parquet")
    return root


EXPECTED = {
    "malformed_json": 1,
    "invalid_utf8": 3,
    "missing_text_key": 3,
    "non_string_text": 3,
    "empty_text": 3,
    "blank_line": 1,
    "not_an_object": 1,
    "truncated_zst": 1,
    "corrupt_zst": 1,
    "unreadable_file": 2,
    "unsupported_file": 1,
}


@pytest.mark.parametrize("unit_mb", ["256", "0.0002"], ids=["one-unit", "tiny-byte-ranges"])
def test_each_bad_input_reason_is_counted_exactly(tmp_path, bad_corpus, tokenizer, unit_mb):
    out = tmp_path / "shards"
    # --allow-empty: the few good documents pack into no sample; the counts are the point.
    run_tool("shard.py", *shard_args([bad_corpus], tokenizer, out, "--unit-size-mb", unit_mb,
                                     "--allow-empty"))
    docs = json.loads((out / "manifest.json").read_text())["documents"]
    assert {k: v["count"] for k, v in docs["skipped"].items()} == EXPECTED
    assert docs["kept"] == 7
    assert docs["read"] == docs["kept"] + sum(EXPECTED.values()) == 27


def test_skip_examples_name_file_and_line(tmp_path, bad_corpus, tokenizer):
    out = tmp_path / "shards"
    # Tiny units split a.jsonl into byte ranges: line numbers must still be absolute.
    run_tool("shard.py", *shard_args([bad_corpus], tokenizer, out, "--unit-size-mb", "0.0002",
                                     "--allow-empty"))
    skipped = json.loads((out / "manifest.json").read_text())["documents"]["skipped"]
    a = str(bad_corpus / "a.jsonl")
    assert skipped["malformed_json"]["examples"] == [f"{a}:3"]
    assert skipped["invalid_utf8"]["examples"][:2] == [f"{a}:4", f"{a}:10"]
    assert skipped["blank_line"]["examples"] == [f"{a}:8"]
    assert skipped["truncated_zst"]["examples"] == [f"{bad_corpus / 'b.jsonl.zst'}:4"]
    assert skipped["missing_text_key"]["examples"][1:] == [
        f"{bad_corpus / 'e.parquet'}:1",
        f"{bad_corpus / 'e.parquet'}:2",
    ]
