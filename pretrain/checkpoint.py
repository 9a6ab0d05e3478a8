"""Crash-safe DeepSpeed checkpoints: complete-or-invisible, newest-valid resume, keep last K.

Layout under ``checkpoint.save_dir``::

    step00000400/            one DeepSpeed checkpoint (tag), every rank's files
        mp_rank_00_model_states.pt, zero_pp_rank_0_mp_rank_00_optim_states.pt, ...
        rng_rank00000.pt     each rank's RNG states (torch, cuda, numpy, python, megatron)
        meta.json            written last, by rank 0, after every rank finished: marks
                             the tag complete and holds step, consumed_samples, fingerprints
    latest                   name of the newest complete tag (atomically replaced)

``meta.json`` is the only commit marker: a kill at any moment leaves either a complete new
tag or only the previous complete ones; a tag without ``meta.json`` is never loaded and is
removed by the next successful save (``latest`` is a convenience pointer, never trusted).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from megatron.core.tensor_parallel import get_cuda_rng_tracker

__all__ = [
    "CheckpointManager",
    "CheckpointMismatchError",
    "capture_rng",
    "check_compatible",
    "restore_rng",
]

log = logging.getLogger(__name__)

META = "meta.json"
LATEST = "latest"
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
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_tag(tag_dir: Path) -> None:
    """Delete a tag so that no crash can leave it looking complete: un-commit, then remove."""
    (tag_dir / META).unlink(missing_ok=True)
    trash = tag_dir.with_name(f".trash-{tag_dir.name}")
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tag_dir, trash)
    shutil.rmtree(trash, ignore_errors=True)


class CheckpointManager:
    """Saves and finds checkpoints in ``save_dir`` (call every method on every rank)."""

    def __init__(self, save_dir: str | Path, keep_last: int) -> None:
        self.save_dir = Path(save_dir)
        self.keep_last = max(1, keep_last)
        self.rank = dist.get_rank() if dist.is_initialized() else 0

    @staticmethod
    def tag_for(step: int) -> str:
        return f"step{step:08d}"

    def complete_tags(self) -> list[str]:
        """Complete tags, oldest first."""
        if not self.save_dir.is_dir():
            return []
        tags = [p.name for p in self.save_dir.iterdir()
                if _TAG.match(p.name) and (p / META).is_file()]
        return sorted(tags)

    def read_meta(self, tag_dir: Path) -> dict[str, Any]:
        return json.loads((tag_dir / META).read_text())

    def find_resume(self, resume: str) -> Path | None:
        """The tag directory to resume from, or ``None`` to start fresh.

        ``auto``: the newest complete tag. ``meta.json`` is the only commit marker;
        ``latest`` is a hint for people and tools (a kill between the two leaves it one
        checkpoint behind). ``none``: start fresh. Anything else: a tag directory, which
        must be complete.
        """
        if resume == "none":
            return None
        if resume != "auto":
            path = Path(resume)
            if not (path / META).is_file():
                raise CheckpointMismatchError(
                    f"checkpoint.resume={resume}: no complete checkpoint there ({META} missing); "
                    f"use a step* directory from a finished save, 'auto' or 'none'")
            return path
        tags = self.complete_tags()
        return self.save_dir / tags[-1] if tags else None

    def save(self, engine, step: int, meta: dict[str, Any]) -> Path:
        """Write tag ``step``; mark it complete only after every rank has written."""
        tag = self.tag_for(step)
        tag_dir = self.save_dir / tag
        if self.rank == 0 and tag_dir.exists():
            _remove_tag(tag_dir)  # a leftover of a killed save, or of an abandoned timeline
        _barrier()
        engine.save_checkpoint(str(self.save_dir), tag=tag, client_state={"step": step},
                               save_latest=False)
        torch.save(capture_rng(), tag_dir / f"rng_rank{self.rank:05d}.pt")
        _fault_injection_point(step)
        _barrier()  # every rank's files are on disk before the tag becomes visible
        if self.rank == 0:
            _atomic_write(tag_dir / META, json.dumps({"step": step, **meta}, indent=1))
            _atomic_write(self.save_dir / LATEST, tag + "\n")
            self._prune(keep=tag)
        _barrier()
        return tag_dir

    def _prune(self, keep: str) -> None:
        """Keep the newest ``keep_last`` complete tags up to ``keep``; drop the rest.

        Tags after ``keep`` belong to a timeline this run abandoned by resuming from an
        older checkpoint; left in place, ``auto`` would jump back to them.
        """
        for p in self.save_dir.iterdir():
            if _TAG.match(p.name) and p.name != keep and (
                    p.name > keep or not (p / META).is_file()):
                if p.name > keep:
                    log.warning("removing %s: newer than the checkpoint this run continued "
                                "from (an abandoned timeline)", p)
                _remove_tag(p)
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
                     data_fingerprint: str, force: bool, tag_dir: Path) -> None:
    """Refuse to resume into another model shape or data set unless ``force``."""
    problems = []
    saved_shape = meta.get("model_shape", {})
    for key in sorted(set(saved_shape) | set(model_shape)):
        if saved_shape.get(key) != model_shape.get(key):
            problems.append(f"{key}: checkpoint {saved_shape.get(key)!r}, config "
                            f"{model_shape.get(key)!r}")
    if meta.get("data_fingerprint") != data_fingerprint:
        problems.append(f"data fingerprint: checkpoint {meta.get('data_fingerprint')}, "
                        f"data.path has {data_fingerprint}")
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
