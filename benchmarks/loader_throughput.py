"""Tokens/s the pretraining loader delivers to one rank, on one CPU core.

    python benchmarks/loader_throughput.py [--data-path DIR] [--seq-length 512]

Without ``--data-path`` it builds a shard directory in a temp dir from real text (vim's
help files when installed, else this Python's stdlib sources): a BPE tokenizer trained
by ``tokenizers``, then ``python data_prep/shard.py`` with small shards (0.25 MB, so a
random order touches many shards). It then times ``TrainBatchIterator`` (rank 3 of
DP=8, random global order across all shards) synchronously and with the prefetch
thread, and, with ``--compare-wids``, ``wids.ShardListDataset`` reading the same tars
in place in the same order. Target: >= 2M tokens/s per rank.

``--order-tokens 300e9`` (default; 0 skips) also measures, each in a fresh process, the
memory and start-up time of one rank's sample order for a split of that many tokens
(``seq_length + 1``-token samples): the numpy ``Generator.permutation`` index each rank
built before the keyed order, next to ``pretrain.data.sampler.SampleOrder`` (a keyed bijection, no
index). Start-up is the time to the first global batch's ids; memory is the peak RSS
growth of the process (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_prep.cli import add_flag  # noqa: E402

EOD = "<|endoftext|>"


def _texts() -> list[str]:
    vim = Path("/usr/share/vim")
    files = sorted(vim.glob("vim*/doc/*.txt")) if vim.is_dir() else []
    if not files:
        files = sorted(Path(os.__file__).parent.glob("*.py"))
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def build_shards(out: Path, *, seq_length: int, shard_size_mb: float) -> None:
    """Real text -> BPE tokenizer -> ``python data_prep/shard.py`` -> ``out``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    texts = _texts()
    work = out.parent
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=8192,
            special_tokens=[EOD],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok.save(str(work / "tokenizer.json"))
    with open(work / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    cmd = [
        sys.executable, str(REPO / "data_prep" / "shard.py"),
        "--input", str(work / "corpus.jsonl"), "--tokenizer", str(work / "tokenizer.json"),
        "--output", str(out), "--seq-length", str(seq_length), "--val-fraction", "0.01",
        "--shard-size-mb", str(shard_size_mb), "--no-progress",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def time_loader(ds, *, seq_length: int, mb: int, prefetch: int, seconds: float) -> float:
    """Tokens/s (input tokens, mb * seq_length per micro-batch) one rank receives."""
    from pretrain.data.sampler import BatchLayout, TrainBatchIterator

    layout = BatchLayout(global_batch_size=mb * 8 * 4, micro_batch_size=mb, dp_size=8)
    with TrainBatchIterator(ds, layout=layout, dp_rank=3, seed=1, prefetch=prefetch) as it:
        for _ in range(20):  # warm-up: open shards, build the permutation
            next(it)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(50):
                batch = next(it)
                n += batch["tokens"].numel()
        return n / (time.perf_counter() - t0)


def time_wids(data_dir: Path, *, lru_size: int, seq_length: int, mb: int, seconds: float) -> float:
    """The same order and collation, samples read by wids.ShardListDataset in place."""
    import numpy as np
    import torch
    import wids

    from pretrain.data.sampler import SampleOrder

    ds = wids.ShardListDataset(
        str(data_dir / "train.wids.json"),
        localname=lambda url: url,  # read in place, no copy to /tmp/_wids_cache
        lru_size=lru_size,  # wids' default is 10; below the shard count a random order thrashes
        transformations=[lambda s: s],
    )
    order = SampleOrder(len(ds), seed=1)
    pos, n, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ids = order.sample_ids(pos, pos + mb)
        pos += mb
        raw = [np.frombuffer(ds[int(i)][".tokens"].getbuffer(), "<u2") for i in ids]
        block = torch.from_numpy(np.stack(raw).astype(np.int64))
        tokens, labels = block[:, :-1].contiguous(), block[:, 1:].contiguous()
        n += tokens.numel() + 0 * labels.numel()
    ds.close()
    return n / (time.perf_counter() - t0)


_ORDER_PROBE = """
import resource, sys, time
import numpy as np
n, mode = int(sys.argv[1]), sys.argv[2]
from pretrain.data.sampler import SampleOrder  # imported before the clock: torch is not the order
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "numpy":  # what pretrain/data/sampler.py did before the keyed order
    ids = np.random.default_rng([1, 0]).permutation(n)[:512]
else:
    ids = SampleOrder(n, seed=1).sample_ids(0, 512)
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(elapsed, (peak - base) * 1024, int(ids[0]))
"""


def measure_order(num_samples: int, mode: str) -> tuple[float, int]:
    """(seconds to the first global batch's ids, peak RSS growth in bytes) in a new process."""
    out = subprocess.run([sys.executable, "-c", _ORDER_PROBE, str(num_samples), mode],
                         cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def report_order(tokens: float, seq_length: int) -> None:
    n = int(tokens // (seq_length + 1))
    print(f"sample order for {tokens:.3g} tokens = {n:,} samples of {seq_length + 1} tokens "
          f"(one rank; a node with 8 ranks holds 8 of these):")
    for mode, name in (("numpy", "numpy Generator.permutation index (before)"),
                       ("keyed", "keyed bijection, SampleOrder (now)")):
        seconds, rss = measure_order(n, mode)
        print(f"  {name}: start-up {seconds:.4f} s, memory {rss / 2**20:,.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_flag(ap, "--data-path", deprecated=("--data-dir",), type=Path,
             help="existing shard dir (default: build one)")
    ap.add_argument("--seq-length", type=int, default=512)
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    ap.add_argument("--shard-size-mb", type=float, default=0.25, help="when building shards")
    ap.add_argument("--compare-wids", action="store_true")
    ap.add_argument("--order-tokens", type=float, default=300e9,
                    help="also measure the sample order for this many tokens (0: skip)")
    ap.add_argument("--order-only", action="store_true", help="only the order measurement")
    args = ap.parse_args()
    # torch (and the loader, which imports it) only now: it takes seconds to import, which
    # `--help` should not pay for.
    import torch

    from pretrain.data.shards import open_split

    torch.set_num_threads(1)  # one core per rank, as on a GPU node with many ranks
    if args.order_tokens:
        report_order(args.order_tokens, args.seq_length)
    if args.order_only:
        return

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_path
        if data_dir is None:
            data_dir = Path(tmp) / "shards"
            t0 = time.perf_counter()
            build_shards(data_dir, seq_length=args.seq_length, shard_size_mb=args.shard_size_mb)
            print(f"built {data_dir} in {time.perf_counter() - t0:.1f}s")
        manifest = json.loads((data_dir / "manifest.json").read_text())
        vocab = manifest["tokenizer"]["vocab_size"]
        kw = dict(seq_length=args.seq_length, mb=args.micro_batch_size, seconds=args.seconds)
        n_shards = len(json.loads((data_dir / "train.wids.json").read_text())["shardlist"])
        print(
            f"train split: {n_shards} shards, seq_length {args.seq_length}, "
            f"micro-batch {args.micro_batch_size}, rank 3 of DP=8, one thread"
        )
        # (prefetch, max_open_shards): the default, the background thread, and an
        # open-shard cache smaller than the shard count (every miss reopens a shard).
        for prefetch, max_open in ((0, 128), (4, 128), (0, max(1, n_shards // 4))):
            with open_split(
                data_dir,
                "train",
                seq_length=args.seq_length,
                vocab_size=vocab,
                max_open_shards=max_open,
            ) as ds:
                rate = time_loader(ds, prefetch=prefetch, **kw)
            mode = "synchronous" if prefetch == 0 else f"prefetch={prefetch} thread"
            verdict = "meets" if rate >= 2e6 else "BELOW"
            print(
                f"loader ({mode}, max_open_shards={max_open}): {rate / 1e6:.2f}M tokens/s "
                f"per rank ({verdict} the 2M target)"
            )
        if args.compare_wids:
            for lru in (n_shards, 10):
                rate = time_wids(data_dir, lru_size=lru, **kw)
                print(
                    f"wids.ShardListDataset in place, same order, lru_size={lru}: "
                    f"{rate / 1e6:.2f}M tokens/s per rank"
                )


if __name__ == "__main__":
    main()
