"""Crash-safe DeepSpeed checkpoints: complete-or-invisible, newest-valid resume, keep last K.

Layout under ``checkpoint.save_dir``::

    step00000400/            one DeepSpeed checkpoint (tag), every rank's files
        mp_rank_00_model_states.pt, zero_pp_rank_0_mp_rank_00_optim_states.pt, ...
        rng_rank00000.pt     each rank's RNG states (torch, cuda, numpy, python, megatron)
        meta.json            written last, by rank 0, after every rank fsynced its files:
                             marks the tag complete; holds step, consumed_samples,
                             fingerprints and every file's size and CRC-32
    latest                   name of the newest complete tag (atomically replaced)
    abandoned/               tags set aside, never deleted: newer than the checkpoint a
                             run resumed from, or moved by checkpoint.overwrite=true

``meta.json`` is the only commit marker: a kill at any moment leaves either a complete new
tag or only the previous complete ones; a tag without ``meta.json`` is never loaded and is
removed by the next successful save (``latest`` is a convenience pointer, never trusted).
Every file is fsynced by the rank that wrote it before the marker is written, and a resume
re-checks the files against the marker (each rank stats all and checksums its share): a
tag that a node crash truncated is skipped, loudly and on every rank alike, in favour of
the previous complete one. Rank 0 decides and broadcasts; no rank lists on its own.

A restart changes nothing on disk until it has saved again: a damaged tag is skipped in
memory and set aside only by the next successful save. A read that fails with an I/O
error (not a missing file, a wrong size or checksum) is retried, and a tag that stays
unreadable stops the run with a retryable error instead of being passed over, since the
file system, not the tag, is likely at fault. A save_dir that holds no checkpoint while
``abandoned/`` does is not a fresh start unless ``checkpoint.ignore_abandoned`` says so.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import stat
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from megatron.core.tensor_parallel import get_cuda_rng_tracker

from data_prep.paths import path_inside
from megatron_patches.deepspeed_durable_io import fsync_file, track_checkpoint_writes
from megatron_patches.deepspeed_mapped_load import map_checkpoint_reads
from megatron_patches.safe_load import (
    UnsafeCheckpointError,
    refusal,
    restricted_load,
    unsafe_globals,
)
from pretrain.runtime.distributed import all_gather_object, broadcast_object
from pretrain.runtime.files import fsync_dir, write_atomic

__all__ = [
    "CheckpointManager",
    "CheckpointMismatchError",
    "CheckpointUnreadableError",
    "TagCheck",
    "capture_rng",
    "check_compatible",
    "file_crc32",
    "refuse_unsafe_files",
    "restore_rng",
    "verify_tag_files",
]

log = logging.getLogger(__name__)

META = "meta.json"
LATEST = "latest"
ABANDONED = "abandoned"
_TAG = re.compile(r"^step(\d{8})$")


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another model shape or another data set."""


class CheckpointUnreadableError(OSError):
    """A checkpoint could not be read for I/O errors after retries (exit 74: relaunch)."""


@dataclass(slots=True)
class TagCheck:
    """What verifying a tag found: damage (missing file, wrong size or checksum, broken
    ``meta.json``: skip the tag) and I/O errors (the read itself failed: retry later)."""

    damage: list[str] = field(default_factory=list)
    io_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.damage or self.io_errors)


def capture_rng() -> dict[str, Any]:
    """Every RNG this process draws from."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(), "tracker": get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    get_cuda_rng_tracker().set_states(state["tracker"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _remove_tag(tag_dir: Path) -> None:
    """Delete a tag so that no crash can leave it looking complete: un-commit, then remove."""
    (tag_dir / META).unlink(missing_ok=True)
    trash = tag_dir.with_name(f".trash-{tag_dir.name}")
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tag_dir, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _set_aside(tag_dir: Path) -> Path:
    """Move a tag into ``save_dir/abandoned/`` (never deleted by this code); returns where."""
    aside = tag_dir.parent / ABANDONED
    aside.mkdir(exist_ok=True)
    target = aside / tag_dir.name
    if target.exists():
        target = aside / f"{tag_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}"
    os.replace(tag_dir, target)
    return target


def file_crc32(path: Path, chunk: int = 1 << 24) -> str:
    """CRC-32 of a file's bytes, as 8 hex digits (zlib; ~1 GB/s, no extra dependency)."""
    crc = 0
    with path.open("rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def _retrying(read: Callable[[], Any], path: Path, attempts: int, rank: int) -> Any:
    """``read()``, retried after an I/O error (1 s, 2 s, 4 s ... apart); a missing file
    (FileNotFoundError) is an answer, not an error, and is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            _fault_injection_read_error(path, rank)
            return read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if attempt == attempts:
                raise
            log.warning("reading %s failed (%s); retrying in %d s (attempt %d of %d)", path,
                        exc, 2 ** (attempt - 1), attempt, attempts)
            time.sleep(2 ** (attempt - 1))
    raise AssertionError("unreachable")


def verify_tag_files(tag_dir: Path, files: dict[str, dict[str, Any]], *, rank: int,
                     world_size: int, attempts: int = 3) -> TagCheck:
    """Problems with ``tag_dir``'s files against ``meta.json``'s list, seen from this rank.

    Every rank checks every file's existence and size (cheap) and the CRC-32 of its
    round-robin share, so the ranks together read each file once. A read that fails with
    an I/O error is tried ``attempts`` times before it counts as one. The CRCs find
    damage, not tampering: whoever can write the files can write ``meta.json`` too.

    Raises:
        PathOutsideError: on every rank alike, a listed name that is absolute or leaves
            ``tag_dir`` (nothing is read then).
    """
    check = TagCheck()
    fix = "this is not a checkpoint this project wrote; do not resume from it"
    if not isinstance(files, dict):
        check.damage.append(f"{tag_dir / META}: 'files' is not a mapping of names to "
                            f"sizes and CRCs")
        return check
    paths = {name: Path(path_inside(tag_dir, name, listed_in=tag_dir / META, fix=fix))
             for name in files}
    for i, (name, expected) in enumerate(sorted(files.items())):
        path = paths[name]
        if not (isinstance(expected, dict) and isinstance(expected.get("size"), int)
                and isinstance(expected.get("crc32"), str)):
            check.damage.append(f"{tag_dir / META}: the entry of {name!r} has no size and "
                                f"crc32")
            continue
        try:
            st = _retrying(lambda p=path: p.stat(), path, attempts, rank)
            size = st.st_size
            if not stat.S_ISREG(st.st_mode):  # a device or FIFO would never end a read
                check.damage.append(f"{path} is not a regular file")
            elif size != expected["size"]:
                check.damage.append(f"{path} has {size} bytes, {META} lists {expected['size']}")
            elif i % world_size == rank and _retrying(
                    lambda p=path: file_crc32(p), path, attempts, rank) != expected["crc32"]:
                check.damage.append(f"{path} fails its CRC-32 check (corrupt)")
        except FileNotFoundError:
            check.damage.append(f"{path} is missing")
        except OSError as exc:
            check.io_errors.append(f"{path} could not be read on rank {rank} ({exc}; "
                                   f"{attempts} attempts)")
    return check


def refuse_unsafe_files(tag_dir: Path) -> None:
    """Refuse ``tag_dir`` on every rank alike if any of its ``.pt`` files names a global
    outside the loader's allowlist (``megatron_patches/safe_load.py``); call on every rank.

    Each rank reads the pickles (not the tensors) of its round-robin share, before any
    rank loads a file: a refusal on the one rank that loads a bad file would leave the
    others waiting in a collective.

    Raises:
        UnsafeCheckpointError: naming the first such file and its globals (exit 78).
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    mine = []
    for i, path in enumerate(sorted(tag_dir.glob("*.pt"))):
        if i % world == rank:
            if path.is_file() and not zipfile.is_zipfile(path):
                # Every file this project (and DeepSpeed under it) writes is zip-serialized;
                # a legacy pickle cannot be scanned here, only refused by the one rank that
                # would load it while the others wait in a collective: refuse it by name.
                mine.append(f"refused to load {path}: not in torch's zip serialization, "
                            f"which every checkpoint this project writes uses, so it cannot "
                            f"be checked before loading; see docs/trust.md")
                continue
            try:
                names = unsafe_globals(path)
            except (OSError, ValueError, RuntimeError):
                continue  # unreadable as a checkpoint: verification or the load says so
            if names:
                mine.append(refusal(path, ", ".join(names)))
    found = sorted(m for part in all_gather_object(mine) for m in part)
    if found:
        raise UnsafeCheckpointError(_summary(found))


class CheckpointManager:
    """Saves and finds checkpoints in ``save_dir`` (call every method on every rank)."""

    def __init__(self, save_dir: str | Path, keep_last: int, *, io_attempts: int = 3,
                 ignore_abandoned: bool = False) -> None:
        self.save_dir = Path(save_dir)
        self.keep_last = max(1, keep_last)
        self.io_attempts = max(1, io_attempts)
        self.ignore_abandoned = ignore_abandoned
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        # Tags a restart skipped as damaged: set aside by the next successful save, not
        # before (until then nothing on disk has changed, whatever went wrong).
        self.skipped: list[str] = []

    @staticmethod
    def tag_for(step: int) -> str:
        return f"step{step:08d}"

    def complete_tags(self) -> list[str]:
        """Complete tags, oldest first (as this rank sees them: call on rank 0)."""
        if not self.save_dir.is_dir():
            return []
        tags = [p.name for p in self.save_dir.iterdir()
                if _TAG.match(p.name) and (p / META).is_file()]
        return sorted(tags)

    def read_meta(self, tag_dir: Path) -> dict[str, Any]:
        return json.loads((tag_dir / META).read_text())

    def prepare_fresh_start(self, resume: str, overwrite: bool) -> None:
        """Refuse a fresh start over existing checkpoints unless ``overwrite`` (then move them).

        Raises:
            CheckpointMismatchError: ``resume=none`` in a save_dir holding complete tags.
        """
        if resume != "none":
            return
        tags = broadcast_object(self.complete_tags() if self.rank == 0 else None)
        if not tags:
            return
        if not overwrite:
            raise CheckpointMismatchError(
                f"checkpoint.resume=none but {self.save_dir} holds checkpoints "
                f"({', '.join(tags)}); a fresh run there would replace them. Use a new "
                f"checkpoint.save_dir, resume with checkpoint.resume=auto, or set "
                f"checkpoint.overwrite=true to move them to {self.save_dir / ABANDONED}/")
        if self.rank == 0:
            moved = [_set_aside(self.save_dir / t) for t in tags]
            (self.save_dir / LATEST).unlink(missing_ok=True)
            log.warning("checkpoint.overwrite=true: moved %d checkpoints aside (not deleted): %s",
                        len(moved), ", ".join(map(str, moved)))
        _barrier()

    def find_resume(self, resume: str, *, set_aside: bool = True) -> Path | None:
        """The tag directory to resume from, or ``None`` to start fresh (same on every rank).

        ``auto``: the newest complete tag whose files match its ``meta.json`` on every
        rank; a damaged tag is skipped (in memory) with a warning naming the file.
        ``meta.json`` is the only commit marker (``latest`` is a hint for people and
        tools). ``none``: start fresh. Anything else: a tag directory, which must be
        complete and intact. ``set_aside=True`` (the run that writes here) lets the next
        successful save move the skipped tags to ``abandoned/`` and refuses step 0 over
        ``abandoned/``; ``False`` (readers such as evaluation) does neither.

        Raises:
            CheckpointUnreadableError: a tag could not be read for I/O errors (retryable).
            CheckpointMismatchError: no tag passed verification, or none is left in
                save_dir while ``abandoned/`` holds some (a fresh start would lose them).
        """
        if resume == "none":
            return None
        if resume != "auto":
            path = Path(resume)
            if not (path / META).is_file():
                raise CheckpointMismatchError(
                    f"checkpoint.resume={resume}: no complete checkpoint there ({META} missing); "
                    f"use a step* directory from a finished save, 'auto' or 'none'")
            check = self._verify(path)
            self._raise_if_unreadable(path, check)
            if check.damage:
                raise CheckpointMismatchError(
                    f"checkpoint.resume={resume} is damaged: {_summary(check.damage)}; resume "
                    f"from another tag or use checkpoint.resume=auto")
            return path
        tags = broadcast_object(self.complete_tags() if self.rank == 0 else None)
        if not tags:
            if set_aside:
                self._refuse_fresh_start_over_abandoned()
            return None
        for tag in reversed(tags):
            check = self._verify(self.save_dir / tag)
            self._raise_if_unreadable(self.save_dir / tag, check)
            if check.ok:
                return self.save_dir / tag
            log.warning("skipping checkpoint %s: %s; trying the previous one (%s stays in "
                        "place until this run saves)", tag, _summary(check.damage), tag)
            if set_aside:
                self.skipped.append(tag)
        raise CheckpointMismatchError(
            f"no checkpoint in {self.save_dir} passed verification ({', '.join(tags)}); "
            f"see the warnings above, restore the files, or start over with "
            f"checkpoint.resume=none checkpoint.overwrite=true")

    def _raise_if_unreadable(self, tag_dir: Path, check: TagCheck) -> None:
        """An I/O error is the file system's, not the tag's: stop (retryable), move nothing."""
        if check.io_errors:
            raise CheckpointUnreadableError(
                f"checkpoint {tag_dir} could not be verified: {_summary(check.io_errors)}. "
                f"Nothing was moved or deleted; relaunch to retry once the file system "
                f"recovers (checkpoint.io_attempts={self.io_attempts} per read here)")

    def _refuse_fresh_start_over_abandoned(self) -> None:
        """A save_dir whose checkpoints are all in ``abandoned/`` is a problem to look at,
        not a new run: refuse step 0 unless ``checkpoint.ignore_abandoned``."""
        aside = broadcast_object(self.abandoned_tags() if self.rank == 0 else None)
        if not aside:
            return
        where = self.save_dir / ABANDONED
        if self.ignore_abandoned:
            log.warning("no checkpoint in %s but %d in %s/; checkpoint.ignore_abandoned=true: "
                        "starting from step 0", self.save_dir, len(aside), where)
            return
        raise CheckpointMismatchError(
            f"checkpoint.resume=auto found no checkpoint in {self.save_dir}, but {where}/ "
            f"holds {', '.join(aside)}: a fresh start would begin at step 0. Move the one to "
            f"resume from back (mv {where}/{aside[-1]} {self.save_dir}/), or set "
            f"checkpoint.ignore_abandoned=true to start from step 0")

    def abandoned_tags(self) -> list[str]:
        """Tags in ``abandoned/`` (as this rank sees them: call on rank 0), oldest first."""
        where = self.save_dir / ABANDONED
        if not where.is_dir():
            return []
        return sorted(p.name for p in where.iterdir() if _TAG.match(p.name.split(".")[0]))

    def _verify(self, tag_dir: Path) -> TagCheck:
        """What every rank found with ``tag_dir`` (the same on every rank)."""
        local = TagCheck()
        try:
            meta = _retrying(lambda: self.read_meta(tag_dir), tag_dir / META, self.io_attempts,
                             self.rank)
            if meta.get("files") is not None:  # older tags list no files: nothing to check
                local = verify_tag_files(tag_dir, meta["files"], rank=self.rank,
                                         world_size=self.world_size, attempts=self.io_attempts)
        except (FileNotFoundError, ValueError) as exc:
            local.damage.append(f"{tag_dir / META} is unreadable here ({exc})")
        except OSError as exc:
            local.io_errors.append(f"{tag_dir / META} could not be read on rank {self.rank} "
                                   f"({exc}; {self.io_attempts} attempts)")
        found = all_gather_object(local)
        return TagCheck(damage=sorted({p for c in found for p in c.damage}),
                        io_errors=sorted({p for c in found for p in c.io_errors}))

    def save(self, engine, step: int, meta: dict[str, Any]) -> Path:
        """Write tag ``step``; fsync every file; mark it complete after every rank has."""
        tag = self.tag_for(step)
        tag_dir = self.save_dir / tag
        if self.rank == 0 and tag_dir.exists():
            # A leftover of a killed save (removed), or of an abandoned timeline (set aside).
            if (tag_dir / META).is_file():
                log.warning("moving %s aside to %s: this run saves that step again",
                            tag_dir, _set_aside(tag_dir))
            else:
                _remove_tag(tag_dir)
        _barrier()
        written = track_checkpoint_writes(engine)
        written.clear()
        engine.save_checkpoint(str(self.save_dir), tag=tag, client_state={"step": step},
                               save_latest=False)
        rng_file = tag_dir / f"rng_rank{self.rank:05d}.pt"
        torch.save(capture_rng(), rng_file)
        fsync_file(rng_file)
        mine = {str(p.relative_to(tag_dir)): {"size": p.stat().st_size, "crc32": file_crc32(p)}
                for p in [*written, rng_file]}
        _fault_injection_point(step)
        files = {k: v for part in all_gather_object(mine) for k, v in part.items()}
        if self.rank == 0:
            fsync_dir(tag_dir)
            # Durable: the rename itself must reach the disk for the commit to survive a
            # node crash.
            write_atomic(tag_dir / META, json.dumps({"step": step, **meta, "files": files},
                                                    indent=1), durable=True)
            write_atomic(self.save_dir / LATEST, tag + "\n", durable=True)
            self._prune(keep=tag)
        _barrier()
        return tag_dir

    def _prune(self, keep: str) -> None:
        """Keep the newest ``keep_last`` complete tags up to ``keep``; tidy the rest.

        Complete tags after ``keep`` belong to a timeline this run abandoned by resuming
        from an older checkpoint; left in place, ``auto`` would jump back to them, so they
        move to ``abandoned/`` (never deleted), as do the tags the restart skipped as
        damaged. Incomplete tags are leftovers of killed saves and are removed.
        """
        for p in sorted(self.save_dir.iterdir()):
            if not _TAG.match(p.name) or p.name == keep:
                continue
            if not (p / META).is_file():
                _remove_tag(p)
            elif p.name > keep:
                log.warning("moved %s to %s: newer than the checkpoint this run continued "
                            "from (an abandoned timeline)", p, _set_aside(p))
            elif p.name in self.skipped:
                log.warning("moved damaged %s to %s (skipped at restart)", p, _set_aside(p))
        self.skipped = []
        complete = [t for t in self.complete_tags() if t <= keep]
        for old in complete[:-self.keep_last]:
            _remove_tag(self.save_dir / old)

    def load(self, engine, tag_dir: Path, *, world_size_changed: bool) -> dict[str, Any]:
        """Load ``tag_dir`` into ``engine`` and restore this rank's RNG; returns meta.

        Every file is read as data (``megatron_patches/safe_load.py``).

        Raises:
            UnsafeCheckpointError: a file names a global that could run code (exit 78).
        """
        meta = self.read_meta(tag_dir)
        refuse_unsafe_files(tag_dir)
        map_checkpoint_reads(engine)  # one copy per node in the page cache, not one per rank
        load_path, client_state = engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
        # DeepSpeed only warns (and returns None) when files are missing.
        if load_path is None or (client_state or {}).get("step") != meta["step"]:
            raise CheckpointMismatchError(
                f"{tag_dir}: DeepSpeed could not load this checkpoint (files missing or from "
                f"another run); move it aside to resume from the previous one")
        rng_file = tag_dir / f"rng_rank{self.rank:05d}.pt"
        if not world_size_changed and rng_file.is_file():
            restore_rng(restricted_load(rng_file))
        else:
            log.info("world size changed since the checkpoint: RNG states re-seeded, not restored")
        return meta


def check_compatible(meta: dict[str, Any], *, model_shape: dict[str, Any],
                     data_fingerprint: str, order_fingerprint: str, layer_spec: str,
                     force: bool, tag_dir: Path,
                     shape_defaults: dict[str, Any] | None = None) -> None:
    """Refuse to resume into another model, data set, sample order or layer spec.

    A shape key the checkpoint lacks (saved before the field existed) counts as its
    default from ``shape_defaults``: that is what the checkpoint was trained with.
    ``force`` loads anyway after a shape, data or order mismatch; a layer-spec mismatch
    is refused regardless (the parameter names differ, DeepSpeed cannot load them).
    """
    saved_spec = meta.get("layer_spec", "local")  # checkpoints before the field: CPU-made
    if saved_spec != layer_spec:
        raise CheckpointMismatchError(
            f"checkpoint {tag_dir} was trained with the {saved_spec!r} layer spec but this "
            f"run builds {layer_spec!r} (the parameter names differ): set "
            f"model.layer_spec={saved_spec}" + (
                " on a CUDA host where transformer_engine imports"
                if saved_spec == "transformer-engine" else "")
            + ", or start a new run in a new checkpoint.save_dir")
    problems, restore = [], []
    saved_shape = {**{k: v for k, v in (shape_defaults or {}).items() if k in model_shape},
                   **meta.get("model_shape", {})}
    for key in sorted(set(saved_shape) | set(model_shape)):
        if saved_shape.get(key) != model_shape.get(key):
            problems.append(f"{key}: checkpoint {saved_shape.get(key)!r}, config "
                            f"{model_shape.get(key)!r}")
            if key in saved_shape:
                restore.append(f"{key}={json.dumps(saved_shape[key])}")
    if meta.get("data_fingerprint") != data_fingerprint:
        problems.append(f"data fingerprint: checkpoint {meta.get('data_fingerprint')}, "
                        f"data.path has {data_fingerprint}")
    if meta.get("order_fingerprint") != order_fingerprint:
        saved = meta.get("order_fingerprint") or "none (saved before order fingerprints)"
        problems.append(
            f"sample order: checkpoint {saved}, this run {order_fingerprint} "
            f"(data.shuffle_seed or the order algorithm differ): the run would repeat some "
            f"samples and skip others")
    if not problems:
        return
    message = (f"checkpoint {tag_dir} does not match this run:\n  " + "\n  ".join(problems)
               + "\nuse a new checkpoint.save_dir for a new run, restore the old settings"
               + (f" (overrides: {' '.join(restore)})" if restore else "")
               + ", or set checkpoint.force_resume=true to load it anyway")
    if force:
        log.warning("%s\n(force_resume=true: loading anyway)", message)
        return
    raise CheckpointMismatchError(message)


def _summary(problems: list[str]) -> str:
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


#: Reads failed so far by :func:`_fault_injection_read_error`.
_injected_read_errors = 0


def _fault_injection_read_error(path: Path, rank: int) -> None:
    """Fail this rank's first N checkpoint reads with EIO if ``LEV_FAULT_READ_EIO`` is
    ``RANK:N`` (tests: a flaky file system during restart verification)."""
    global _injected_read_errors
    who, _, count = os.environ.get("LEV_FAULT_READ_EIO", "").partition(":")
    if who == str(rank) and _injected_read_errors < int(count or 0):
        _injected_read_errors += 1
        raise OSError(5, "Input/output error (fault injection)", str(path))


def _fault_injection_point(step: int) -> None:
    """kill -9 this rank here if ``LEV_FAULT_KILL_DURING_SAVE_STEP`` names ``step``.

    Tests use it to crash a real run at the worst moment of a save: the checkpoint's
    files are on disk but the tag is not yet marked complete.
    """
    if os.environ.get("LEV_FAULT_KILL_DURING_SAVE_STEP") == str(step):
        log.error("fault injection: SIGKILL during the save of step %d", step)
        os.kill(os.getpid(), signal.SIGKILL)


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
