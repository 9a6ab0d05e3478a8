"""Per-unit results -> ``manifest.json``, ``{train,val}.wids.json`` and ``token_counts.npy``.

The merge walks units in index order, so totals, skip examples and shard order are the same
for any rank count. See FORMAT.md for every field.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_EXAMPLES",
    "SPLITS",
    "SkipCounter",
    "empty_split",
    "fingerprint",
    "load_manifest",
    "merge_units",
    "wids_index",
    "write_json_atomic",
    "write_outputs",
]

FORMAT_NAME = "lev-shards"
FORMAT_VERSION = 1
#: Example locations ("file:line") kept per skip reason.
MAX_EXAMPLES = 5
SPLITS = ("train", "val")


class SkipCounter:
    """Counts skipped records per reason and keeps the first few locations of each."""

    def __init__(self) -> None:
        self.reasons: dict[str, dict] = {}

    def add(self, reason: str, where: str | None) -> None:
        entry = self.reasons.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if where is not None and len(entry["examples"]) < MAX_EXAMPLES:
            entry["examples"].append(where)

    @property
    def total(self) -> int:
        return sum(e["count"] for e in self.reasons.values())

    def merge(self, other: dict[str, dict]) -> None:
        """Add another counter's ``reasons`` dict (from a unit result)."""
        for reason, entry in other.items():
            mine = self.reasons.setdefault(reason, {"count": 0, "examples": []})
            mine["count"] += entry["count"]
            room = MAX_EXAMPLES - len(mine["examples"])
            mine["examples"].extend(entry["examples"][: max(room, 0)])

    def to_dict(self) -> dict[str, dict]:
        return {k: self.reasons[k] for k in sorted(self.reasons)}


def empty_split() -> dict:
    """A split's totals before any shard: ``{samples, tokens, tail_tokens_dropped, shards}``."""
    return {"samples": 0, "tokens": 0, "tail_tokens_dropped": 0, "shards": []}


def fingerprint(
    tokenizer_sha256: str, seq_length: int, dtype: str, shard_sha256s: list[str]
) -> str:
    """sha256 of the newline-joined tokenizer sha256, seq_length, dtype and sorted shard sha256s."""
    parts = [tokenizer_sha256, str(seq_length), dtype, *sorted(shard_sha256s)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def merge_units(units: list[dict], header: dict, tokenizer: dict) -> dict:
    """Build the manifest from unit results (in unit order).

    Args:
        units: One result dict per work unit, as written by ``shard.process_unit``.
        header: ``seq_length``, ``sample_tokens``, ``dtype``, ``val_fraction``, ``text_key``.
        tokenizer: ``TokenizerSpec.manifest_entry()``.
    """
    splits = {name: empty_split() for name in SPLITS}
    docs = {"read": 0, "kept": 0, "kept_train": 0, "kept_val": 0}
    skips = SkipCounter()
    imported: list[dict] = []
    for unit in units:
        imported.extend(unit.get("imported", []))
        for key in docs:
            docs[key] += unit["documents"][key]
        skips.merge(unit["documents"]["skipped"])
        for name in SPLITS:
            src, dst = unit["splits"][name], splits[name]
            for key in ("samples", "tokens", "tail_tokens_dropped"):
                dst[key] += src[key]
            dst["shards"].extend(src["shards"])
    for split in splits.values():
        split["shards"].sort(key=lambda s: s["path"])
    all_shas = [s["sha256"] for split in splits.values() for s in split["shards"]]
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tokenizer": tokenizer,
        **header,
        "work_units": len(units),
        "splits": splits,
        "documents": {**docs, "skipped": skips.to_dict()},
        "imported": imported,
        "fingerprint": fingerprint(
            tokenizer["sha256"], header["seq_length"], header["dtype"], all_shas
        ),
    }


def wids_index(name: str, shards: list[dict]) -> dict:
    """The ``*.wids.json`` shard list for one split (urls relative to the output dir)."""
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": name,
        "shardlist": [{"url": s["path"], "nsamples": s["samples"]} for s in shards],
    }


def write_json_atomic(path: str, obj: object) -> None:
    """Write JSON under a unique tmp name, then rename: readers see the old or the new file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_outputs(root: str, manifest: dict, token_counts: np.ndarray) -> None:
    """Write wids lists, token counts, then the manifest last (its presence = run complete)."""
    for name in SPLITS:
        write_json_atomic(
            os.path.join(root, f"{name}.wids.json"),
            wids_index(name, manifest["splits"][name]["shards"]),
        )
    tmp = os.path.join(root, f"token_counts.tmp.{os.getpid()}.npy")
    np.save(tmp, token_counts.astype(np.int64))
    os.replace(tmp, os.path.join(root, "token_counts.npy"))
    write_json_atomic(os.path.join(root, "manifest.json"), manifest)


def load_manifest(root: str) -> dict:
    """Read ``root/manifest.json``; raises ``FileNotFoundError`` / ``ValueError`` if absent or bad."""
    with open(os.path.join(root, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    if manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"{root}/manifest.json is not a {FORMAT_NAME} manifest")
    return manifest
