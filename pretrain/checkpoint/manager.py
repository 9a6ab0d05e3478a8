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
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from megatron.core.tensor_parallel import get_cuda_rng_tracker

from megatron_patches.deepspeed_durable_io import fsync_file, track_checkpoint_writes
from pretrain.runtime.distributed import all_gather_object, broadcast_object

__all__ = [
    "CheckpointManager",
    "CheckpointMismatchError",
    "capture_rng",
    "check_compatible",
    "file_crc32",
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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    # The rename itself must reach the disk for the commit to survive a node crash.
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def verify_tag_files(tag_dir: Path, files: dict[str, dict[str, Any]], *, rank: int,
                     world_size: int) -> list[str]:
    """Problems with ``tag_dir``'s files against ``meta.json``'s list, seen from this rank.

    Every rank checks every file's existence and size (cheap) and the CRC-32 of its
    round-robin share, so the ranks together read each file once.
    """
    problems = []
    for i, (name, expected) in enumerate(sorted(files.items())):
        path = tag_dir / name
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{path} is missing")
            continue
        if size != expected["size"]:
            problems.append(f"{path} has {size} bytes, {META} lists {expected['size']}")
        elif i % world_size == rank and file_crc32(path) != expected["crc32"]:
            problems.append(f"{path} fails its CRC-32 check (corrupt)")
    return problems


class CheckpointManager:
    """Saves and finds checkpoints in ``save_dir`` (call every method on every rank)."""

    def __init__(self, save_dir: str | Path, keep_last: int) -> None:
        self.save_dir = Path(save_dir)
        self.keep_last = max(1, keep_last)
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1

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
        rank; a tag that fails is skipped with a warning naming the file. ``meta.json`` is
        the only commit marker (``latest`` is a hint for people and tools). ``none``: start
        fresh. Anything else: a tag directory, which must be complete and intact.
        ``set_aside=False`` leaves damaged tags in place (readers such as evaluation).
        """
        if resume == "none":
            return None
        if resume != "auto":
            path = Path(resume)
            if not (path / META).is_file():
                raise CheckpointMismatchError(
                    f"checkpoint.resume={resume}: no complete checkpoint there ({META} missing); "
                    f"use a step* directory from a finished save, 'auto' or 'none'")
            problems = self._verify(path)
            if problems:
                raise CheckpointMismatchError(
                    f"checkpoint.resume={resume} is damaged: {problems[0]}"
                    + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                    + "; resume from another tag or use checkpoint.resume=auto")
            return path
        tags = broadcast_object(self.complete_tags() if self.rank == 0 else None)
        for tag in reversed(tags):
            problems = self._verify(self.save_dir / tag)
            if not problems:
                return self.save_dir / tag
            log.warning("skipping checkpoint %s: %s%s; trying the previous one", tag,
                        problems[0], f" (and {len(problems) - 1} more)" if len(problems) > 1
                        else "")
            if set_aside and self.rank == 0:  # kept for inspection, out of auto's way
                log.warning("moved damaged %s to %s", tag, _set_aside(self.save_dir / tag))
            _barrier()
        if tags:
            raise CheckpointMismatchError(
                f"no checkpoint in {self.save_dir} passed verification ({', '.join(tags)}); "
                f"see the warnings above, restore the files, or start over with "
                f"checkpoint.resume=none checkpoint.overwrite=true")
        return None

    def _verify(self, tag_dir: Path) -> list[str]:
        """Problems every rank found with ``tag_dir`` (the same list on every rank)."""
        try:
            files = self.read_meta(tag_dir).get("files")
            if files is None:
                local = []  # written before meta.json listed files: cannot be checked
            else:
                local = verify_tag_files(tag_dir, files, rank=self.rank,
                                         world_size=self.world_size)
        except (OSError, ValueError) as exc:
            local = [f"{tag_dir / META} is unreadable here ({exc})"]
        return sorted({p for problems in all_gather_object(local) for p in problems})

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
            _fsync_dir(tag_dir)
            _atomic_write(tag_dir / META,
                          json.dumps({"step": step, **meta, "files": files}, indent=1))
            _atomic_write(self.save_dir / LATEST, tag + "\n")
            self._prune(keep=tag)
        _barrier()
        return tag_dir

    def _prune(self, keep: str) -> None:
        """Keep the newest ``keep_last`` complete tags up to ``keep``; tidy the rest.

        Complete tags after ``keep`` belong to a timeline this run abandoned by resuming
        from an older checkpoint; left in place, ``auto`` would jump back to them, so they
        move to ``abandoned/`` (never deleted). Incomplete tags are leftovers of killed
        saves and are removed.
        """
        for p in sorted(self.save_dir.iterdir()):
            if not _TAG.match(p.name) or p.name == keep:
                continue
            if not (p / META).is_file():
                _remove_tag(p)
            elif p.name > keep:
                log.warning("moved %s to %s: newer than the checkpoint this run continued "
                            "from (an abandoned timeline)", p, _set_aside(p))
        complete = [t for t in self.complete_tags() if t <= keep]
        for old in complete[:-self.keep_last]:
            _remove_tag(self.save_dir / old)

    def load(self, engine, tag_dir: Path, *, world_size_changed: bool) -> dict[str, Any]:
        """Load ``tag_dir`` into ``engine`` and restore this rank's RNG; returns meta."""
        meta = self.read_meta(tag_dir)
        load_path, client_state = engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
        # DeepSpeed only warns (and returns None) when files are missing.
        if load_path is None or (client_state or {}).get("step") != meta["step"]:
            raise CheckpointMismatchError(
                f"{tag_dir}: DeepSpeed could not load this checkpoint (files missing or from "
                f"another run); move it aside to resume from the previous one")
        rng_file = tag_dir / f"rng_rank{self.rank:05d}.pt"
        if not world_size_changed and rng_file.is_file():
            restore_rng(torch.load(rng_file, weights_only=False))
        else:
            log.info("world size changed since the checkpoint: RNG states re-seeded, not restored")
        return meta


def check_compatible(meta: dict[str, Any], *, model_shape: dict[str, Any],
                     data_fingerprint: str, order_fingerprint: str, layer_spec: str,
                     force: bool, tag_dir: Path) -> None:
    """Refuse to resume into another model, data set, sample order or layer spec.

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
    problems = []
    saved_shape = meta.get("model_shape", {})
    for key in sorted(set(saved_shape) | set(model_shape)):
        if saved_shape.get(key) != model_shape.get(key):
            problems.append(f"{key}: checkpoint {saved_shape.get(key)!r}, config "
                            f"{model_shape.get(key)!r}")
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
               + "\nuse a new checkpoint.save_dir for a new run, restore the old settings, or "
               "set checkpoint.force_resume=true to load it anyway")
    if force:
        log.warning("%s\n(force_resume=true: loading anyway)", message)
        return
    raise CheckpointMismatchError(message)


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
