"""Data prep that could never train exits 2 naming why; long data work talks while it works."""

from __future__ import annotations

import json

from dp_helpers import run_tool, shard_args


def shard_fails(tmp_path, tokenizer, name: str, content: str, *extra: str) -> str:
    source = tmp_path / name
    source.write_text(content)
    out = tmp_path / "out"
    proc = run_tool("shard.py", *shard_args([source], tokenizer, out, *extra), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not (out / "manifest.json").exists()  # nothing that looks like a usable data set
    return proc.stderr


def test_an_empty_input_file(tmp_path, tokenizer):
    err = shard_fails(tmp_path, tokenizer, "empty.jsonl", "")
    assert "no documents read from" in err and "empty.jsonl" in err


def test_all_blank_documents(tmp_path, tokenizer):
    err = shard_fails(tmp_path, tokenizer, "blank.jsonl",
                      json.dumps({"text": "  "}) + "\n" + json.dumps({"text": ""}) + "\n")
    assert "all 2 documents of" in err and "empty_text=2 (e.g." in err and "blank.jsonl:1" in err


def test_the_wrong_text_key(tmp_path, tokenizer):
    err = shard_fails(tmp_path, tokenizer, "body.jsonl",
                      "".join(json.dumps({"body": "to be or not"}) + "\n" for _ in range(3)))
    assert "missing_text_key=3" in err and "is --text-key 'text' the field holding the text?" in err


def test_a_seq_length_longer_than_the_corpus(tmp_path, tokenizer):
    err = shard_fails(tmp_path, tokenizer, "short.jsonl",
                      json.dumps({"text": "A short text."}) + "\n", "--seq-length", "512")
    assert "packs into no sample" in err and "--seq-length 512 + 1 = 513 tokens" in err


def test_a_validation_split_that_would_be_empty(tmp_path, tokenizer):
    docs = "".join(json.dumps({"text": f"Document {i}: to be, or not to be. " * 8}) + "\n"
                   for i in range(6))
    err = shard_fails(tmp_path, tokenizer, "few.jsonl", docs)  # default --val-fraction 0.01
    assert "the validation split is empty" in err and "raise --val-fraction" in err
    assert "--val-fraction 0" in err


def test_val_fraction_zero_shards_without_validation_and_says_so(tmp_path, tokenizer):
    source = tmp_path / "few.jsonl"
    source.write_text("".join(json.dumps({"text": f"Document {i}: to be, or not. " * 8}) + "\n"
                              for i in range(6)))
    proc = run_tool("shard.py", *shard_args([source], tokenizer, tmp_path / "out",
                                            "--val-fraction", "0"))
    assert "runs on these shards cannot evaluate" in proc.stdout + proc.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["splits"]["val"]["samples"] == 0 and manifest["splits"]["train"]["samples"] > 0


def test_without_a_terminal_progress_lines_come_every_log_every_s(tmp_path, tokenizer,
                                                                  pile_corpus):
    args = shard_args([pile_corpus], tokenizer, tmp_path / "out", "--unit-size-mb", "0.2",
                      "--log-every-s", "0.001", "--val-fraction", "0.05")
    args.remove("--no-progress")  # progress on; stderr is a pipe here, not a terminal
    proc = run_tool("shard.py", *args)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "progress:" in line]
    assert lines, proc.stdout + proc.stderr
    assert "units (" in lines[-1] and "tokens/s, ETA " in lines[-1]
