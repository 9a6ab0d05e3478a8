"""Unusable settings fail before any work starts, with a message that names the fix."""

from __future__ import annotations

import json

import pytest
from dp_helpers import SEQ, run_tool, shard_args
from tokenizers import Tokenizer, models, pre_tokenizers

from data_prep.inputs import InputError
from data_prep.launch import World
from data_prep.shard import ShardConfig, ShardConfigError, run
from data_prep.tokenizer_spec import TokenizerError
from data_prep.workdir import OutputError


def _word_tokenizer(path, n_words: int, eod: bool):
    vocab = {"[UNK]": 0, **({"<|endoftext|>": 1} if eod else {})}
    for i in range(n_words):
        vocab[f"w{i}"] = len(vocab)
    for word in ("to", "be", "or", "not"):
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return path


def _config(inputs, tokenizer, out, **kw) -> ShardConfig:
    return ShardConfig(
        inputs=[str(i) for i in inputs],
        tokenizer=str(tokenizer),
        output=str(out),
        seq_length=kw.pop("seq_length", SEQ),
        val_fraction=kw.pop("val_fraction", 0.0),  # 30 tiny documents: no validation split
        progress=False,
        **kw,
    )


@pytest.fixture
def small_input(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(json.dumps({"text": "to be or not to be " * 20}) + "\n" for _ in range(30))
    )
    return path


def test_vocab_too_big_for_uint16_is_refused(tmp_path, small_input):
    tok = _word_tokenizer(tmp_path / "big.json", 70_000, eod=True)
    with pytest.raises(
        TokenizerError,
        match=r"vocab_size=70006, which does not fit --dtype uint16.*use --dtype uint32",
    ):
        run(_config([small_input], tok, tmp_path / "out", dtype="uint16"), World())
    assert not (tmp_path / "out").exists()


def test_big_vocab_gets_uint32_automatically(tmp_path, small_input):
    tok = _word_tokenizer(tmp_path / "big.json", 70_000, eod=True)
    manifest = run(_config([small_input], tok, tmp_path / "out"), World())
    assert manifest["dtype"] == "uint32" and manifest["splits"]["train"]["samples"] > 0


def test_missing_eod_token_is_refused(tmp_path, small_input):
    tok = _word_tokenizer(tmp_path / "noeod.json", 10, eod=False)
    with pytest.raises(
        TokenizerError, match=r"EOD token '<\|endoftext\|>' is not in the vocabulary.*--eod-token"
    ):
        run(_config([small_input], tok, tmp_path / "out"), World())


def test_missing_eod_token_cli_exits_2_with_message(tmp_path, small_input):
    tok = _word_tokenizer(tmp_path / "noeod.json", 10, eod=False)
    proc = run_tool("shard.py", *shard_args([small_input], tok, tmp_path / "out"), check=False)
    assert proc.returncode == 2
    assert "shard.py: error: EOD token" in proc.stderr


def test_unwritable_output_dir_is_refused(tmp_path, small_input, tokenizer):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputError, match=r"--output '.*a-file/out' is not a writable directory"):
        run(_config([small_input], tokenizer, blocker / "out"), World())


def test_missing_input_is_refused(tmp_path, tokenizer):
    with pytest.raises(InputError, match=r"does not exist; pass a file, directory or glob"):
        run(_config([tmp_path / "nope.jsonl"], tokenizer, tmp_path / "out"), World())


def test_glob_matching_nothing_is_refused(tmp_path, tokenizer):
    with pytest.raises(InputError, match=r"matched no files"):
        run(_config([tmp_path / "*.jsonl.zst"], tokenizer, tmp_path / "out"), World())


def test_out_of_range_flag_is_refused(tmp_path, tokenizer):
    with pytest.raises(ShardConfigError, match=r"--val-fraction must be in \[0, 1\), got 1.5"):
        _config([tmp_path], tokenizer, tmp_path / "out", val_fraction=1.5)


def test_rerun_with_other_settings_needs_overwrite(tmp_path, small_input, tokenizer):
    out = tmp_path / "out"
    run(_config([small_input], tokenizer, out), World())
    with pytest.raises(OutputError, match=r"different settings \(seq_length\); pass --overwrite"):
        run(_config([small_input], tokenizer, out, seq_length=64), World())
    manifest = run(_config([small_input], tokenizer, out, seq_length=64, overwrite=True), World())
    assert manifest["seq_length"] == 64


def test_foreign_files_in_output_need_overwrite(tmp_path, small_input, tokenizer):
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    with pytest.raises(
        OutputError, match=r"already holds train but no resumable run; pass --overwrite"
    ):
        run(_config([small_input], tokenizer, out), World())


def test_help_shows_only_real_defaults():
    text = run_tool("shard.py", "--help").stdout
    assert "(default: None)" not in text and "(default: True)" not in text
    assert "maximum shard size (default: 256.0)" in text
