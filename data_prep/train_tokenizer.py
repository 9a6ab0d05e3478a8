"""Train a byte-level BPE tokenizer (tokenizers JSON) with an EOD token from a corpus.

Uses the same readers as shard.py, so it accepts the same inputs and counts the same skips.

Usage:
    python data_prep/train_tokenizer.py --input corpus/ --output tokenizer.json --vocab-size 32000 \
        --val-fraction 0.01

``--val-fraction`` must be the value later given to ``shard.py``: the documents that
shard.py will put in the validation split (chosen by a hash of the text,
``data_prep.packing.is_val``) are left out here, so the tokenizer never sees held-out text.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator

if __package__ in (None, ""):  # run as `python data_prep/train_tokenizer.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from data_prep.cli import RealDefaultsFormatter
from data_prep.inputs import InputError, discover_files, plan_units
from data_prep.manifest import SkipCounter
from data_prep.packing import is_val
from data_prep.progress import RateLog, format_duration
from data_prep.readers import iter_piece
from data_prep.tokenizer_spec import DEFAULT_EOD_TOKEN

__all__ = ["train_tokenizer", "main"]

log = logging.getLogger("data_prep.train_tokenizer")
_MB = 1e6


def _batches(
    inputs: list[str], text_key: str, skips: SkipCounter, max_docs: int | None,
    val_fraction: float, held_out: list[int], log_every_s: float | None,
) -> Iterator[list[str]]:
    files = discover_files(inputs)
    units = plan_units(files, 1 << 30)
    total_mb = sum(p.est_bytes for unit in units for p in unit) / _MB
    # Reading and counting words is the part that scales with the corpus; the merges
    # that follow depend on the vocabulary size.
    progress = RateLog(log, "MB", None if max_docs else total_mb, log_every_s,
                       ("docs", "chars"))
    seen = 0
    batch: list[str] = []

    def done() -> None:
        log.info("read %s (skipped %d, left out %d validation documents); computing the "
                 "BPE merges", progress.summary(), skips.total, held_out[0])

    for unit in units:
        for piece in unit:
            for text, reason, where in iter_piece(piece, text_key):
                if reason is not None:
                    skips.add(reason, where)
                    continue
                if is_val(text, val_fraction):
                    held_out[0] += 1
                    continue
                batch.append(text)
                seen += 1
                if len(batch) >= 1000:
                    chars = sum(map(len, batch))
                    progress.add(chars / _MB, docs=len(batch), chars=chars)
                    yield batch
                    batch = []
                if max_docs is not None and seen >= max_docs:
                    if batch:
                        yield batch
                    done()
                    return
    if batch:
        chars = sum(map(len, batch))
        progress.add(chars / _MB, docs=len(batch), chars=chars)
        yield batch
    done()


def train_tokenizer(
    inputs: list[str],
    output: str,
    vocab_size: int = 32000,
    *,
    text_key: str = "text",
    eod_token: str = DEFAULT_EOD_TOKEN,
    min_frequency: int = 2,
    max_docs: int | None = None,
    val_fraction: float = 0.0,
    log_every_s: float | None = 30.0,
) -> tuple[SkipCounter, int]:
    """Train byte-level BPE on the documents of ``inputs`` and save it to ``output``.

    The EOD token is the first special token, so it gets id 0. Documents that
    ``shard.py --val-fraction val_fraction`` sends to the validation split are left out.
    Returns the skip counts and the number of validation documents left out.

    Raises:
        ValueError: ``vocab_size`` too small to hold the 256 byte symbols plus EOD, or an
            ``output`` that is a directory or cannot be written.
    """
    if os.path.isdir(output):
        raise ValueError(f"--output {output!r} is a directory; pass the file to write, e.g. "
                         f"{os.path.join(output, 'tokenizer.json')}")
    parent = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--output {output!r}: cannot create {parent} ({exc.strerror})") from exc
    if not os.access(parent, os.W_OK):
        raise ValueError(f"--output {output!r}: {parent} is not writable")
    if vocab_size < 257:
        raise ValueError(f"--vocab-size must be >= 257 (256 bytes + EOD), got {vocab_size}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[eod_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no <unk>
        show_progress=False,
    )
    skips = SkipCounter()
    held_out = [0]
    batches = _batches(inputs, text_key, skips, max_docs, val_fraction, held_out, log_every_s)
    tok.train_from_iterator(batches, trainer=trainer)
    tmp = f"{output}.tmp.{os.getpid()}"
    try:
        tok.save(tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return skips, held_out[0]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=RealDefaultsFormatter)
    p.add_argument("--input", nargs="+", required=True, dest="inputs", metavar="PATH|GLOB",
                   help="files (.jsonl .jsonl.zst .txt .parquet), directories or quoted globs")
    p.add_argument("--output", required=True, help="the tokenizer.json file to write")
    p.add_argument("--vocab-size", type=int, default=32000,
                   help="vocabulary size including the EOD token")
    p.add_argument("--text-key", default="text", help="JSON/parquet field with the text")
    p.add_argument("--eod-token", default=DEFAULT_EOD_TOKEN,
                   help="end-of-document token (gets id 0)")
    p.add_argument("--min-frequency", type=int, default=2,
                   help="pairs seen fewer times are never merged")
    p.add_argument("--max-docs", type=int, default=None, help="train on the first N documents only")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="the --val-fraction you will give shard.py: its validation documents "
                        "are left out of tokenizer training (0: use every document)")
    p.add_argument("--log-every-s", type=float, default=30.0,
                   help="seconds between progress lines while reading (0: none)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[train_tokenizer] %(message)s")
    t0 = time.monotonic()
    try:
        skips, held_out = train_tokenizer(
            args.inputs,
            args.output,
            args.vocab_size,
            text_key=args.text_key,
            eod_token=args.eod_token,
            min_frequency=args.min_frequency,
            max_docs=args.max_docs,
            val_fraction=args.val_fraction,
            log_every_s=args.log_every_s,
        )
    except (InputError, ValueError) as exc:
        print(f"train_tokenizer.py: error: {exc}", file=sys.stderr)
        return 2
    size = Tokenizer.from_file(args.output).get_vocab_size()
    print(
        f"wrote {args.output}: vocab_size={size}, eod={args.eod_token!r}; left out {held_out} "
        f"validation documents; skipped {skips.total} records "
        f"{ {k: v['count'] for k, v in skips.to_dict().items()} } in "
        f"{format_duration(time.monotonic() - t0)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
