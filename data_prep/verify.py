"""Check a shard directory against its manifest: hashes, counts, sample sizes, shard lists.

Usage:
    python data_prep/verify.py DIR

Exit status 0 when everything matches; 1 with one line per problem (naming the shard)
otherwise; 2 when DIR has no readable manifest; 78 when the manifest lists a shard path
that is absolute or leaves DIR (data_prep/paths.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tarfile

if __package__ in (None, ""):  # run as `python data_prep/verify.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from data_prep.cli import RealDefaultsFormatter
from data_prep.manifest import SPLITS, fingerprint, load_manifest
from data_prep.paths import PathOutsideError, path_inside
from data_prep.progress import RateLog

__all__ = ["verify", "main"]

log = logging.getLogger("data_prep.verify")

_CHUNK = 1 << 20


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_tar(
    path: str, name: str, sample_bytes: int, dtype: np.dtype, vocab_size: int
) -> tuple[int, list[str]]:
    """Count samples in one tar and check each member; returns (samples, problems)."""
    problems, samples = [], 0
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.name.endswith(".tokens") or "." in member.name[: -len(".tokens")]:
                    problems.append(f"{name}: unexpected member {member.name!r}")
                    continue
                if member.size != sample_bytes:
                    problems.append(
                        f"{name}: member {member.name} has {member.size} bytes, expected {sample_bytes}"
                    )
                    continue
                data = tar.extractfile(member).read()
                if len(data) != sample_bytes:
                    problems.append(f"{name}: member {member.name} is truncated")
                    continue
                ids = np.frombuffer(data, dtype=dtype)
                if ids.size and int(ids.max()) >= vocab_size:
                    problems.append(
                        f"{name}: member {member.name} holds id {int(ids.max())} >= vocab_size {vocab_size}"
                    )
                samples += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        problems.append(f"{name}: cannot be read as a tar ({exc})")
    return samples, problems


def _shard_paths(root: str, manifest: dict) -> dict[str, str]:
    """Each listed shard's path, refusing any that leaves ``root`` before anything is read."""
    fix = "re-create the directory with data_prep/shard.py"
    return {shard["path"]: path_inside(root, shard["path"], listed_in=os.path.join(
                root, "manifest.json"), fix=fix)
            for split in SPLITS for shard in manifest["splits"][split]["shards"]}


def _shard_mb(paths: dict[str, str]) -> float:
    total = 0
    for path in paths.values():
        try:
            total += os.path.getsize(path)
        except OSError:
            pass  # reported as missing below
    return total / 1e6


def verify(root: str, log_every_s: float | None = None) -> list[str]:
    """Return a list of problems found in ``root`` (empty when it matches its manifest).

    With ``log_every_s``, logs a progress line (shards, MB/s, ETA) that often.

    Raises:
        PathOutsideError: a listed shard path is absolute or leaves ``root``.
    """
    manifest = load_manifest(root)
    paths = _shard_paths(root, manifest)
    progress = RateLog(log, "MB", _shard_mb(paths), log_every_s, ("shards",))
    problems: list[str] = []
    dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
    sample_bytes = manifest["sample_tokens"] * dtype.itemsize
    vocab_size = manifest["tokenizer"]["vocab_size"]
    shas = []
    for split in SPLITS:
        info = manifest["splits"][split]
        total_samples = total_tokens = 0
        for shard in info["shards"]:
            name, path = shard["path"], paths[shard["path"]]
            shas.append(shard["sha256"])
            if not os.path.isfile(path):
                problems.append(f"{name}: missing")
                continue
            sha = _sha256(path)
            if sha != shard["sha256"]:
                problems.append(
                    f"{name}: sha256 {sha[:16]}... != manifest {shard['sha256'][:16]}..."
                )
            samples, tar_problems = _check_tar(path, name, sample_bytes, dtype, vocab_size)
            problems.extend(tar_problems)
            if samples != shard["samples"]:
                problems.append(f"{name}: {samples} samples, manifest says {shard['samples']}")
            progress.add(os.path.getsize(path) / 1e6, shards=1)
            if shard["tokens"] != shard["samples"] * manifest["sample_tokens"]:
                problems.append(
                    f"{name}: manifest tokens {shard['tokens']} != samples x sample_tokens"
                )
            total_samples += shard["samples"]
            total_tokens += shard["tokens"]
        if (total_samples, total_tokens) != (info["samples"], info["tokens"]):
            problems.append(
                f"{split}: shard sums ({total_samples} samples, {total_tokens} tokens) "
                f"!= split totals ({info['samples']}, {info['tokens']})"
            )
        problems.extend(_check_wids(root, split, info["shards"]))
    docs = manifest["documents"]
    skipped = sum(e["count"] for e in docs["skipped"].values())
    if (
        docs["read"] != docs["kept"] + skipped
        or docs["kept"] != docs["kept_train"] + docs["kept_val"]
    ):
        problems.append(
            f"documents: read={docs['read']} != kept={docs['kept']} + skipped={skipped} "
            "(or kept != kept_train + kept_val)"
        )
    expected_fp = fingerprint(
        manifest["tokenizer"]["sha256"], manifest["seq_length"], manifest["dtype"], shas
    )
    if manifest["fingerprint"] != expected_fp:
        problems.append("manifest: fingerprint does not match the listed shards")
    problems.extend(_check_counts(root, manifest))
    log.info("checked %s", progress.summary())
    return problems


def _check_wids(root: str, split: str, shards: list[dict]) -> list[str]:
    path = os.path.join(root, f"{split}.wids.json")
    try:
        with open(path, encoding="utf-8") as fh:
            index = json.load(fh)
    except (OSError, ValueError) as exc:
        return [f"{split}.wids.json: unreadable ({exc})"]
    listed = [(s["url"], s["nsamples"]) for s in index.get("shardlist", [])]
    expected = [(s["path"], s["samples"]) for s in shards]
    return (
        [] if listed == expected else [f"{split}.wids.json: shard list differs from the manifest"]
    )


def _check_counts(root: str, manifest: dict) -> list[str]:
    try:
        counts = np.load(os.path.join(root, "token_counts.npy"))
    except (OSError, ValueError) as exc:
        return [f"token_counts.npy: unreadable ({exc})"]
    problems = []
    if counts.shape != (manifest["tokenizer"]["vocab_size"],):
        problems.append(
            f"token_counts.npy: shape {counts.shape} != ({manifest['tokenizer']['vocab_size']},)"
        )
    elif int(counts.sum()) != manifest["splits"]["train"]["tokens"]:
        problems.append(
            f"token_counts.npy: sums to {int(counts.sum())}, train tokens are "
            f"{manifest['splits']['train']['tokens']}"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=RealDefaultsFormatter)
    p.add_argument("dir", help="shard directory written by data_prep/shard.py")
    p.add_argument("--log-every-s", type=float, default=30.0,
                   help="seconds between progress lines (0: none)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[verify] %(message)s")
    try:
        problems = verify(args.dir, args.log_every_s)
    except PathOutsideError as exc:
        print(f"verify.py: error: {exc} (exit 78)", file=sys.stderr)
        return 78
    except (OSError, ValueError, KeyError) as exc:
        print(f"verify.py: error: cannot read the manifest of {args.dir!r}: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(f"MISMATCH {line}")
    if problems:
        print(f"verify.py: {len(problems)} problem(s) in {args.dir}", file=sys.stderr)
        return 1
    manifest = load_manifest(args.dir)
    n = sum(len(manifest["splits"][s]["shards"]) for s in SPLITS)
    print(f"OK {args.dir}: {n} shards match manifest (fingerprint {manifest['fingerprint'][:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
