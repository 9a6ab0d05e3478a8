"""A second real corpus: WordNet 3.0's glosses as documents, in The Pile's jsonl.zst format.

Why WordNet: it is real English written by people (definitions and usage examples of
117,659 synsets, 9 MB of text), permissively licensed (the WordNet 3.0 licence: use,
copy, modify and distribute with the notice kept), shipped by Debian's ``wordnet-base``
package so any Debian/Ubuntu machine can build it offline from its package mirror, and
unlike Shakespeare in style, which is what a second corpus is for. The Bible and the
Python documentation stay held out (DEVELOPERS.md).

A document is ``SYNSETS_PER_DOC`` consecutive synsets of one lexicographer file (e.g.
``noun.animal``), one line each: ``words (pos): gloss``. Consecutive synsets of a file
are related, so a document reads like a page of a thesaurus.

Usage (via ``data_prep/sample_corpus.py --corpus wordnet OUT``, or directly):
    python data_prep/wordnet_corpus.py OUT [--deb wordnet-base_3.0-37_all.deb]

Writes ``OUT/00.jsonl.zst`` (nouns), ``01`` (verbs), ``02`` (adjectives), ``03``
(adverbs). The package is found in ``/usr/share/wordnet`` when installed, else fetched
with ``apt-get download wordnet-base`` into ``OUT/.cache/`` and unpacked there (no root
needed once the package lists exist).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import zstandard

__all__ = ["PACKAGE", "SYNSETS_PER_DOC", "build_corpus", "find_wordnet", "main", "synset_line"]

PACKAGE = "wordnet-base"
SYNSETS_PER_DOC = 16
_INSTALLED = "/usr/share/wordnet"
_PARTS = (("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r"))
_POS_NAME = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
# Adjective words carry a syntactic marker such as "galore(ip)"; it is not text.
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")


def find_wordnet(cache_dir: str, deb: str | None = None) -> str:
    """Directory holding ``data.noun`` etc.: installed, cached, or downloaded and unpacked."""
    if deb is None and os.path.isfile(os.path.join(_INSTALLED, "data.noun")):
        return _INSTALLED
    unpacked = os.path.join(cache_dir, "root")
    data_dir = os.path.join(unpacked, "usr", "share", "wordnet")
    if os.path.isfile(os.path.join(data_dir, "data.noun")):
        return data_dir
    os.makedirs(cache_dir, exist_ok=True)
    if deb is None:
        if shutil.which("apt-get") is None:
            raise RuntimeError("apt-get is not available: install WordNet's data files "
                               f"({PACKAGE}) by hand and pass --deb PATH to its .deb")
        proc = subprocess.run(["apt-get", "download", PACKAGE], cwd=cache_dir,
                              capture_output=True, text=True, check=False)
        debs = glob.glob(os.path.join(cache_dir, f"{PACKAGE}_*.deb"))
        if proc.returncode != 0 or not debs:
            raise RuntimeError(f"`apt-get download {PACKAGE}` failed "
                               f"({proc.stderr.strip()[-300:]}); run `apt-get update` first, "
                               "or pass --deb PATH")
        deb = debs[0]
    elif not os.path.isfile(deb):
        raise FileNotFoundError(f"--deb {deb!r} does not exist")
    subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True)
    return data_dir


def synset_line(record: str) -> tuple[int, str] | None:
    """``(lexicographer file number, "words (pos): gloss")`` of one ``data.*`` line.

    Returns ``None`` for the licence header lines (they start with two spaces).
    """
    if record.startswith("  ") or "|" not in record:
        return None
    fields, gloss = record.split("|", 1)
    parts = fields.split()
    lex_file, pos, count = int(parts[1]), parts[2], int(parts[3], 16)
    words = [_ADJ_MARKER.sub("", w).replace("_", " ") for w in parts[4:4 + 2 * count:2]]
    return lex_file, f"{', '.join(words)} ({_POS_NAME[pos]}): {gloss.strip()}"


def build_corpus(out_dir: str, wordnet_dir: str) -> dict[str, int]:
    """Write one ``NN.jsonl.zst`` per part of speech; return documents per file."""
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for index, (part, _) in enumerate(_PARTS):
        docs: list[str] = []
        current: list[str] = []
        current_file = None
        with open(os.path.join(wordnet_dir, f"data.{part}"), encoding="utf-8") as fh:
            for record in fh:
                parsed = synset_line(record)
                if parsed is None:
                    continue
                lex_file, line = parsed
                if current and (lex_file != current_file or len(current) == SYNSETS_PER_DOC):
                    docs.append(_document(current, current_file, part, len(docs)))
                    current = []
                current_file = lex_file
                current.append(line)
        if current:
            docs.append(_document(current, current_file, part, len(docs)))
        name = f"{index:02d}.jsonl.zst"
        path = os.path.join(out_dir, name)
        payload = ("\n".join(docs) + "\n").encode("utf-8")
        with open(path + ".tmp", "wb") as fh:
            fh.write(zstandard.ZstdCompressor(level=10).compress(payload))
        os.replace(path + ".tmp", path)
        written[name] = len(docs)
    return written


def _document(lines: list[str], lex_file: int, part: str, number: int) -> str:
    meta = {"pile_set_name": "WordNet 3.0", "part_of_speech": part, "lex_file": lex_file,
            "doc": number, "source": f"{PACKAGE}:data.{part}"}
    return json.dumps({"text": "\n".join(lines) + "\n", "meta": meta}, ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="output directory")
    p.add_argument("--deb", default=None, help=f"a local {PACKAGE} .deb (skips apt-get download)")
    args = p.parse_args(argv)
    try:
        wordnet_dir = find_wordnet(os.path.join(args.out, ".cache"), args.deb)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"wordnet_corpus.py: error: {exc}", file=sys.stderr)
        return 2
    for name, n in build_corpus(args.out, wordnet_dir).items():
        print(f"{os.path.join(args.out, name)}: {n} documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
