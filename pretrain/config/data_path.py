"""The forms of ``data.path`` (one shard directory or a weighted mixture), parsed without
importing torch, so a config validates in milliseconds. The mixture itself:
``pretrain/data/blend.py``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pretrain.config.errors import ConfigError

__all__ = ["MIX_BLOCK", "DataSource", "parse_data_path"]

#: Positions per mixing block: each holds every source's exact share (pretrain/data/blend.py).
MIX_BLOCK = 8192
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True, slots=True)
class DataSource:
    """One shard directory of a mixture: where, how much (normalised), and its name in
    logs and metrics (the directory's base name unless given)."""

    path: str
    weight: float
    name: str


def parse_data_path(value: str | Sequence[Any]) -> list[DataSource]:
    """The sources of ``data.path`` in any of the forms of the module docstring.

    Raises:
        ConfigError: a malformed form, a weight that is not a positive number, or one too
            small to get a position in a mixing block.
    """
    where = "data.path"
    pairs: list[tuple[float, str, str | None]] = []
    if isinstance(value, str):
        words = value.split()
        if len(words) <= 1:
            return [DataSource(value, 1.0, _base_name(value))] if value else []
        pairs = _weight_path_pairs(words, where)
    elif isinstance(value, Sequence) and value and all(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            unknown = set(item) - {"path", "weight", "name"}
            if unknown or "path" not in item:
                raise ConfigError(
                    f"{where}[{i}]={item!r}: each source is {{path: DIR, weight: W}} with an "
                    f"optional name" + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
            pairs.append((_weight(item.get("weight", 1.0), f"{where}[{i}].weight"),
                          str(item["path"]), item.get("name")))
    elif isinstance(value, Sequence) and value:
        pairs = _weight_path_pairs([str(v) for v in value], where)
    else:
        raise ConfigError(f"{where}={value!r}; give a shard directory, 'W1 DIR1 W2 DIR2', or a "
                          f"list of {{path: DIR, weight: W}}")
    total = sum(w for w, _, _ in pairs)
    names = [name or _base_name(path) for _, path, name in pairs]
    for i, name in enumerate(names):  # two sources may share a base name: make names unique
        if names.count(name) > 1:
            names[i] = f"{name}_{i}"
    sources = [DataSource(path, w / total, name)
               for (w, path, _), name in zip(pairs, names, strict=True)]
    smallest = min(sources, key=lambda s: s.weight)
    if len(sources) > 1 and smallest.weight * MIX_BLOCK < 0.5:
        raise ConfigError(
            f"{where}: source {smallest.name} has weight {smallest.weight:.2e} of the mixture, "
            f"below 1/{MIX_BLOCK} (the mixing block); raise it or drop the source")
    return sources


def _weight_path_pairs(words: list[str], where: str) -> list[tuple[float, str, None]]:
    if len(words) % 2 or not all(_NUMBER.match(w) for w in words[::2]):
        raise ConfigError(
            f"{where}={' '.join(words)!r}: the Megatron form alternates weights and "
            f"directories, e.g. '0.7 /data/pile 0.3 /data/code'")
    return [(_weight(float(w), where), p, None) for w, p in zip(words[::2], words[1::2],
                                                                  strict=True)]


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{where}={value!r}: a weight must be a number > 0")
    return float(value)


def _base_name(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) or path
