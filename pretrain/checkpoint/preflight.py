"""Start-up checks every rank runs together, so that all stop at once with one message.

A problem one rank finds alone (a shard missing on its node, a save_dir that is a
node-local disk) would otherwise stop that rank while the others wait in the next
collective until a timeout. Here each check gathers every rank's findings and raises the
same error on every rank, naming the ranks and hosts.
"""

from __future__ import annotations

import logging
import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from data_prep.paths import PathOutsideError
from pretrain.config import ConfigError
from pretrain.data.shards import (
    DataMismatchError,
    ShardIndexError,
    ShardsNotFoundError,
    TokenShardDataset,
)
from pretrain.runtime.distributed import all_gather_object, broadcast_object
from pretrain.runtime.files import current_umask
from pretrain.runtime.launcher import node_name

__all__ = ["check_save_dir_shared", "open_splits_everywhere", "rank_view_of_save_dir",
           "restrict_new_files"]

_DATA_ERRORS = (ShardsNotFoundError, DataMismatchError, ShardIndexError, PathOutsideError)

log = logging.getLogger(__name__)

_PROBES = ".probes"


def rank_view_of_save_dir(save_dir: str | Path, rank: int) -> Path:
    """``save_dir`` as this rank sees it.

    Tests simulate node-local disks with ``LEV_FAULT_UNSHARED_SAVE_DIR=R1,R2,...``: those
    ranks see a private directory of their own at ``save_dir/../<name>.rank<R>``.
    """
    save_dir = Path(save_dir)
    unshared = os.environ.get("LEV_FAULT_UNSHARED_SAVE_DIR", "")
    if str(rank) in unshared.split(","):
        return save_dir.with_name(f"{save_dir.name}.rank{rank}")
    return save_dir


#: Permission bits withheld from everything the run creates, per ``checkpoint.group_access``:
#: never group write or anything for others; ``none`` withholds group read too.
_WITHHELD = {"read": 0o027, "none": 0o077}


def restrict_new_files(group_access: str, save_dir: str | Path, *, rank: int) -> str | None:
    """Tighten this process's umask per ``checkpoint.group_access`` (before anything is
    written) and say what others can do to an existing ``save_dir``.

    The umask only gains bits: a stricter one set by the user stays. Returns the warning
    logged on rank 0 about ``save_dir`` (``None`` when only its owner can write it).
    """
    os.umask(current_umask() | _WITHHELD[group_access])
    try:
        st = os.stat(save_dir)
    except OSError:
        return None  # created by this run, under the umask just set
    others = []
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        others.append("every user")
    elif st.st_mode & stat.S_IWOTH:
        others.append("every user (sticky: they can add files, not replace yours)")
    if st.st_mode & stat.S_IWGRP:
        others.append(f"group {st.st_gid}")
    if st.st_uid != os.geteuid():
        others.append(f"its owner, uid {st.st_uid}")
    if not others:
        return None
    warning = (f"checkpoint.save_dir={save_dir} can be written by {' and '.join(others)}: they "
               f"can delete or replace checkpoints (a replaced checkpoint loads as data only: "
               f"exit 78 if it holds code), plant a lease that holds this run up, or leave files "
               f"under the names this run writes. Use a directory only you can write "
               f"(chmod g-w,o-w {save_dir}); see docs/trust.md")
    if rank == 0:
        log.warning("%s", warning)
    return warning


def check_save_dir_shared(save_dir: Path, *, timeout_s: float = 30.0) -> None:
    """Prove ``save_dir`` is one directory on every node: each rank writes a probe file
    and must see every other rank's (waiting up to ``timeout_s`` for NFS attribute
    caches).

    Raises:
        ConfigError: on every rank, naming the ranks/hosts that cannot see the others.
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    host = node_name()
    nonce = broadcast_object(uuid.uuid4().hex if rank == 0 else None)
    probes = save_dir / _PROBES
    probes.mkdir(parents=True, exist_ok=True)
    mine = probes / f"{nonce}.rank{rank}"
    mine.write_text(host)
    all_gather_object(None)  # every probe is written before anyone looks
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [r for r in range(world) if not (probes / f"{nonce}.rank{r}").exists()]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    seen = all_gather_object({"rank": rank, "host": host, "missing": missing})
    mine.unlink(missing_ok=True)
    blind = [s for s in seen if s["missing"]]
    if not blind:
        return
    hosts = {s["rank"]: s["host"] for s in seen}
    lines = "; ".join(
        f"rank {s['rank']} ({s['host']}) cannot see the probes of rank(s) "
        + ", ".join(f"{r} ({hosts[r]})" for r in s["missing"]) for s in blind)
    raise ConfigError(
        f"checkpoint.save_dir={save_dir} is not the same directory on every node: {lines}. "
        f"Put it on a filesystem every node mounts (Lustre, GPFS, NFS), not a node-local "
        f"disk, so that a requeued job finds its checkpoints")


def open_splits_everywhere(open_split: Callable[[str], TokenShardDataset],
                           splits: tuple[str, ...]) -> list[TokenShardDataset]:
    """Open ``splits`` on every rank and check every shard file (exists, size).

    Returns the datasets where every rank succeeded. Otherwise raises, on every rank, the
    first failing rank's error type with its message and the list of ranks/hosts that
    saw a problem, so all ranks exit together (code 2; 78 for a listed path that leaves
    the shard directory) with one message.
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    datasets: list[TokenShardDataset] = []
    problems: list[str] = []
    kind = ShardsNotFoundError.__name__
    try:
        datasets = [open_split(split) for split in splits]
        problems = [p for ds in datasets for p in ds.check_files()]
    except _DATA_ERRORS as exc:
        kind, problems = type(exc).__name__, [str(exc)]
    found = all_gather_object({"rank": rank, "host": node_name(), "kind": kind,
                     "problems": problems})
    bad = [f for f in found if f["problems"]]
    if not bad:
        return datasets
    for ds in datasets:
        ds.close()
    first = bad[0]["problems"]
    where = ", ".join(f"rank {f['rank']} ({f['host']})" for f in bad)
    error = {cls.__name__: cls for cls in _DATA_ERRORS}[bad[0]["kind"]]
    raise error(
        f"{first[0]}" + (f" (and {len(first) - 1} more)" if len(first) > 1 else "")
        + f"; seen by {where}" + (
            ". Copy the whole shard directory to every node (or a shared filesystem), or "
            "re-run data_prep/shard.py" if error is ShardsNotFoundError else ""))
