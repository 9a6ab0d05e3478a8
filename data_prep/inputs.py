"""Find the input files and cut them into work units that do not depend on the rank count.

A *work unit* is a list of ``Piece``s (see ``readers``) processed in order by one rank; it
is also the unit of crash recovery (one completion marker each) and of packing (each unit
packs its own token stream, so the output is identical for any number of ranks).

Cutting rules (all depend only on the files and ``unit_bytes``, never on the world size):
- a ``.jsonl`` bigger than ``unit_bytes`` becomes line-aligned byte ranges of that size;
- a ``.jsonl.zst`` becomes ``K`` line strides, ``K = ceil(size * ZST_RATIO / unit_bytes)``
  capped at ``ZST_MAX_STRIDES`` because every stride decompresses the whole stream;
- a ``.parquet`` becomes runs of row groups of about ``unit_bytes``;
- a Megatron ``.idx`` (+ ``.bin``) becomes document ranges of about ``unit_bytes`` of tokens
  (``indexed_input``);
- small whole files (and ``.txt`` documents) are grouped until a unit reaches ``unit_bytes``.

``auto_unit_bytes`` picks ``unit_bytes`` from the total input size alone (so the output stays
the same for any rank count) small enough that even a 30 MB corpus gives every rank work.
"""

from __future__ import annotations

import glob
import math
import os

from data_prep.errors import InputError
from data_prep.readers import Piece, file_kind, file_size

__all__ = [
    "InputError",
    "auto_unit_bytes",
    "ZST_RATIO",
    "ZST_MAX_STRIDES",
    "discover_files",
    "plan_units",
    "assign_units",
]

#: Assumed decompression ratio of jsonl.zst (the Pile's is ~3-4x); only sizes the strides.
ZST_RATIO = 4
#: At most this many ranks share one .zst file: each stride costs one full decompression.
ZST_MAX_STRIDES = 16
_GLOB_CHARS = set("*?[")
_MB = 1 << 20
#: ``--unit-size-mb auto``: aim for this many units, each between the two bounds. 1 MB of
#: text is ~250k tokens, so the tail a unit drops (< one sample) stays under 1 % at 2048.
AUTO_UNITS, AUTO_MIN_BYTES, AUTO_MAX_BYTES = 64, 1 * _MB, 256 * _MB


def discover_files(inputs: list[str]) -> list[str]:
    """Expand files, directories and globs into a sorted, de-duplicated list of absolute paths.

    Files found inside directories with an unsupported extension are kept (they are counted
    as ``unsupported_file`` skips rather than silently ignored); hidden entries are not.

    Raises:
        InputError: an input that does not exist, a glob matching nothing, or a file named
            explicitly whose extension we cannot read.
    """
    found: set[str] = set()
    for spec in inputs:
        if not os.path.lexists(spec) and os.path.exists(spec + ".idx"):
            spec += ".idx"  # Megatron's --data-path form: the PREFIX of PREFIX.bin/.idx
        if _GLOB_CHARS & set(spec) and not os.path.lexists(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise InputError(
                    f"--input {spec!r} matched no files; check the pattern and quote it"
                )
            for match in matches:
                found.update(_expand(match, explicit=False))
        elif os.path.isdir(spec):
            found.update(_expand(spec, explicit=False))
        elif os.path.lexists(spec):  # includes dangling symlinks: the reader counts those
            found.update(_expand(spec, explicit=True))
        else:
            raise InputError(f"--input {spec!r} does not exist; pass a file, directory or glob")
    if not found:
        raise InputError(f"--input {inputs!r} holds no files")
    return _pair_indexed(found)


def _pair_indexed(found: set[str]) -> list[str]:
    """Megatron pairs enter as their ``.idx`` alone; the ``.bin`` is read through it."""
    for path in sorted(p for p in found if p.endswith(".idx")):
        if not os.path.exists(path[:-4] + ".bin"):
            raise InputError(
                f"{path} has no {os.path.basename(path[:-4])}.bin beside it: a Megatron indexed "
                f"dataset needs both files")
    return sorted(p for p in found if not (p.endswith(".bin") and p[:-4] + ".idx" in found))


def _expand(path: str, *, explicit: bool) -> list[str]:
    if os.path.isdir(path):
        out = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            out.extend(
                os.path.abspath(os.path.join(root, f)) for f in files if not f.startswith(".")
            )
        return out
    if explicit and path.endswith(".bin"):
        if not os.path.exists(path[:-4] + ".idx"):
            raise InputError(f"--input {path!r} has no .idx beside it: a Megatron indexed "
                             f"dataset needs PREFIX.bin and PREFIX.idx")
        path = path[:-4] + ".idx"
    if explicit and file_kind(path) is None:
        raise InputError(
            f"--input {path!r} has an unsupported extension; use .jsonl, .jsonl.zst, .txt, "
            f".parquet or a Megatron .bin/.idx pair"
        )
    return [os.path.abspath(path)]


def _pieces_for(path: str, unit_bytes: int) -> list[Piece]:
    kind = file_kind(path)
    size = file_size(path)
    if kind is None:
        return [Piece(path, "unsupported", 0, 0, 0)]
    if kind == "jsonl":
        n = max(1, math.ceil(size / unit_bytes))
        bounds = [i * unit_bytes for i in range(n)] + [max(size, 0)]
        return [
            Piece(path, kind, bounds[i], bounds[i + 1], bounds[i + 1] - bounds[i]) for i in range(n)
        ]
    if kind == "jsonl.zst":
        est = size * ZST_RATIO
        n = min(max(1, math.ceil(est / unit_bytes)), ZST_MAX_STRIDES)
        return [Piece(path, kind, k, n, est // n) for k in range(n)]
    if kind == "parquet":
        return _parquet_pieces(path, size, unit_bytes)
    if kind == "indexed":
        from data_prep.indexed_input import plan_indexed_pieces  # imports megatron-core

        return plan_indexed_pieces(path, unit_bytes)
    return [Piece(path, kind, 0, 0, size)]


def auto_unit_bytes(files: list[str]) -> int:
    """``--unit-size-mb auto``: about ``AUTO_UNITS`` units, within [1 MB, 256 MB] each.

    A function of the inputs' (estimated decompressed) sizes only, so the work units and
    hence the output bytes are the same for any rank count.
    """
    total = 0
    for path in files:
        kind = file_kind(path)
        if kind == "indexed":
            total += file_size(path[:-4] + ".bin")
        else:
            total += file_size(path) * (ZST_RATIO if kind == "jsonl.zst" else 1)
    return int(min(max(total // AUTO_UNITS, AUTO_MIN_BYTES), AUTO_MAX_BYTES))


def _parquet_pieces(path: str, size: int, unit_bytes: int) -> list[Piece]:
    import pyarrow.parquet as pq  # heavy import, only when parquet input exists

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception:  # noqa: BLE001 - any failure: one piece, the reader counts it unreadable
        return [Piece(path, "parquet", 0, 1, size)]
    pieces, start, acc = [], 0, 0
    for group in range(meta.num_row_groups):
        acc += meta.row_group(group).total_byte_size
        if acc >= unit_bytes:
            pieces.append(Piece(path, "parquet", start, group + 1, acc))
            start, acc = group + 1, 0
    if start < meta.num_row_groups or not pieces:
        pieces.append(Piece(path, "parquet", start, max(meta.num_row_groups, start), acc))
    return pieces


def plan_units(files: list[str], unit_bytes: int) -> list[list[Piece]]:
    """Cut ``files`` (already sorted) into work units of about ``unit_bytes`` each."""
    if unit_bytes <= 0:
        raise InputError(f"unit size must be positive, got {unit_bytes} bytes")
    units: list[list[Piece]] = []
    current: list[Piece] = []
    current_bytes = 0
    for path in files:
        pieces = _pieces_for(path, unit_bytes)
        if len(pieces) > 1:
            # A split file: each slice is a unit on its own, so slices can run in parallel.
            if current:
                units.append(current)
                current, current_bytes = [], 0
            units.extend([p] for p in pieces)
            continue
        piece = pieces[0]
        if current and current_bytes + piece.est_bytes > unit_bytes:
            units.append(current)
            current, current_bytes = [], 0
        current.append(piece)
        current_bytes += piece.est_bytes
    if current:
        units.append(current)
    return units


def assign_units(units: list[list[Piece]], world_size: int) -> list[list[int]]:
    """Give each rank a list of unit indices, largest units first to the least loaded rank.

    Deterministic (ties broken by index), so every rank computes the same assignment
    without talking to the others.
    """
    loads = [0] * world_size
    out: list[list[int]] = [[] for _ in range(world_size)]
    sizes = [sum(p.est_bytes for p in unit) for unit in units]
    for idx in sorted(range(len(units)), key=lambda i: (-sizes[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        out[rank].append(idx)
        loads[rank] += max(sizes[idx], 1)
    for lst in out:
        lst.sort()
    return out
