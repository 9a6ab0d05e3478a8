"""Build the offline lm-evaluation-harness task ``lev_cloze`` from a validation split.

``python -m pretrain.cloze_task --data-path SHARD_DIR --output TASK_DIR [--max-docs 1000]``

LAMBADA-style: each held-out passage (the text of one validation sample, cut at EOD,
decoded with the shards' own tokenizer) is cut after its last sentence-final word (a word
followed by ``.``, ``!`` or ``?``); the task is that word given everything before it.
Passages come from the validation split only (never trained on), in sample order, one
per sample, keeping those with at least ``--min-words`` words of context. Writes ``TASK_DIR/lev_cloze.jsonl`` (``context``, ``target`` = space + word) and
``TASK_DIR/lev_cloze.yaml`` (``pretrain/evaluation/lm_eval_tasks/lev_cloze.yaml`` pointing at it):
``lm_eval --model hf --model_args pretrained=HF_DIR --include_path TASK_DIR --tasks lev_cloze``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

from data_prep.cli import add_flag
from pretrain.runtime.logs import setup_logging

__all__ = ["build_task", "cloze_item", "main"]

log = logging.getLogger("pretrain.cloze_task")

TEMPLATE = Path(__file__).resolve().parent / "lm_eval_tasks" / "lev_cloze.yaml"
# A word that ends a sentence: the target is the passage's last such word.
_SENTENCE_END = re.compile(r"(?<=\S) (?P<word>[A-Za-z]+)[.!?]")


def cloze_item(text: str, min_words: int) -> dict[str, str] | None:
    """``{"context", "target"}``: the passage up to its last sentence-final word, and that
    word (with its leading space); ``None`` if there is none after ``min_words`` words."""
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return None
    last = ends[-1]
    context = text[: last.start()].lstrip()
    if len(context.split()) < min_words:
        return None
    return {"context": context, "target": " " + last["word"]}


def build_task(data_dir: Path, output: Path, *, max_docs: int, min_words: int) -> int:
    """Write the task's data and YAML into ``output``; returns the number of items."""
    from tokenizers import Tokenizer

    from pretrain.data.shards import load_manifest, open_split

    manifest = load_manifest(data_dir)
    record = manifest["tokenizer"]
    candidates = [Path(record["path"]), data_dir.parent / Path(record["path"]).name]
    tok_path = next((p for p in candidates if p.is_file()), None)
    if tok_path is None:
        raise FileNotFoundError(f"the shards' tokenizer is not at {candidates[0]}")
    tokenizer = Tokenizer.from_file(str(tok_path))
    eod = int(record["eod_id"])
    items = []
    with open_split(data_dir, "val", seq_length=manifest["seq_length"],
                    vocab_size=record["vocab_size"]) as val:
        for sample in range(len(val)):
            ids = val[sample].tolist()
            pieces, piece = [], []
            for token in ids:
                if token == eod:
                    pieces.append(piece)
                    piece = []
                else:
                    piece.append(token)
            pieces.append(piece)
            item = cloze_item(tokenizer.decode(max(pieces, key=len)), min_words)
            if item is not None:
                items.append(item)
            if len(items) >= max_docs:
                break
    if not items:
        raise ValueError(f"no validation passage in {data_dir} has >= {min_words} words and "
                         f"an alphabetic last word; lower --min-words")
    output.mkdir(parents=True, exist_ok=True)
    data = output / "lev_cloze.jsonl"
    data.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    yaml_text = TEMPLATE.read_text().replace(
        "test: lev_cloze.jsonl  # replaced by the absolute path in TASK_DIR's copy",
        f"test: {data.resolve()}")
    (output / "lev_cloze.yaml").write_text(yaml_text)
    return len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the offline lev_cloze lm-eval task.")
    add_flag(parser, "--data-path", deprecated=("--data",), required=True, type=Path,
             help="shard dir (its val split)")
    parser.add_argument("--output", required=True, type=Path, help="task dir to write")
    parser.add_argument("--max-docs", type=int, default=1000, help="default 1000")
    parser.add_argument("--min-words", type=int, default=8, help="default 8")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        n = build_task(args.data_path, args.output, max_docs=args.max_docs, min_words=args.min_words)
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    log.info("wrote %d cloze items to %s; run: lm_eval --model hf --model_args "
             "pretrained=HF_DIR,dtype=float32 --include_path %s --tasks lev_cloze", n,
             args.output / "lev_cloze.jsonl", args.output)
    return 0

