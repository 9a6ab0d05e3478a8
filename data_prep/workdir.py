"""Resume state inside the output directory (``DIR/.work/``), which the loader ignores.

```
DIR/.work/plan.json              settings + work units of the run this directory belongs to
DIR/.work/units/u000003.json     unit 3 is done: its shards, counts and skips (the marker)
DIR/.work/units/u000003.counts.npz   its train-split unigram counts (sparse)
DIR/.work/ranks/ready.STEP       files mode: rank 0 finished preparing the directory
DIR/.work/ranks/failed.STEP.R    files mode: rank R stopped with an error (message inside)
                                 (STEP = JOB.rRESTARTS.STEP: a requeue never reads the old ones)
```
A unit's marker is written (tmp + rename) only after its shards are renamed into place, so
after a crash a unit either has a marker and whole shards, or no marker and is redone from
scratch (its leftover shards are deleted first). No shard is ever listed twice.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from data_prep.manifest import write_json_atomic

__all__ = ["OutputError", "WorkDir", "OUTPUT_ENTRIES"]

#: Everything shard.py writes into the output dir; ``--overwrite`` removes exactly these.
OUTPUT_ENTRIES = (
    "manifest.json",
    "train.wids.json",
    "val.wids.json",
    "token_counts.npy",
    "train",
    "val",
    ".work",
)


class OutputError(ValueError):
    """The output directory cannot be used as asked; the message says what to change."""


class WorkDir:
    """Paths and operations on ``DIR/.work``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.work = os.path.join(root, ".work")
        self.units_dir = os.path.join(self.work, "units")
        self.ranks_dir = os.path.join(self.work, "ranks")

    # -- checks before any work -------------------------------------------------------------
    def check_writable(self, rank: int) -> None:
        """Create the directory and prove we can write a file in it."""
        probe = os.path.join(self.root, f".write-probe.{rank}.{os.getpid()}")
        try:
            os.makedirs(self.root, exist_ok=True)
            with open(probe, "wb") as fh:
                fh.write(b"ok")
            os.remove(probe)
        except OSError as exc:
            raise OutputError(
                f"--output {self.root!r} is not a writable directory ({exc.strerror}); "
                "pass a directory you can create files in"
            ) from exc

    def check_reusable(self, plan: dict) -> bool:
        """Return True if an earlier run with this exact plan can be resumed.

        Raises:
            OutputError: the directory holds something else (other settings or files).
        """
        plan_path = os.path.join(self.work, "plan.json")
        if os.path.exists(plan_path):
            with open(plan_path, encoding="utf-8") as fh:
                old = json.load(fh)
            if old != plan:
                changed = sorted(
                    k
                    for k in plan["settings"]
                    if old.get("settings", {}).get(k) != plan["settings"][k]
                )
                what = ", ".join(changed) if changed else "the input files or their sizes"
                raise OutputError(
                    f"--output {self.root!r} holds a run with different settings ({what}); "
                    "pass --overwrite to start afresh, or choose another --output"
                )
            return True
        present = [e for e in OUTPUT_ENTRIES if os.path.lexists(os.path.join(self.root, e))]
        if ".work" in present and set(os.listdir(self.work)) <= {"ranks"}:
            present.remove(".work")  # only launch markers (a rank that failed early): no run
        if present:
            raise OutputError(
                f"--output {self.root!r} already holds {', '.join(present)} but no resumable run; "
                "pass --overwrite to replace it"
            )
        return False

    # -- preparation (rank 0) ---------------------------------------------------------------
    def clear(self) -> None:
        """Remove everything a previous run wrote (and nothing else) for ``--overwrite``."""
        for entry in OUTPUT_ENTRIES:
            path = os.path.join(self.root, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)

    def read_plan(self) -> dict | None:
        """The plan rank 0 wrote, or None when there is none."""
        try:
            with open(os.path.join(self.work, "plan.json"), encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None

    def write_plan(self, plan: dict) -> None:
        for d in (
            self.units_dir,
            self.ranks_dir,
            os.path.join(self.root, "train"),
            os.path.join(self.root, "val"),
        ):
            os.makedirs(d, exist_ok=True)
        write_json_atomic(os.path.join(self.work, "plan.json"), plan)

    # -- units ------------------------------------------------------------------------------
    def marker(self, unit: int) -> str:
        return os.path.join(self.units_dir, f"u{unit:06d}.json")

    def is_done(self, unit: int) -> bool:
        return os.path.exists(self.marker(unit))

    def save_unit(self, unit: int, result: dict, counts: np.ndarray) -> None:
        """Persist a finished unit: counts first, the marker (result json) last."""
        nz = np.flatnonzero(counts)
        path = os.path.join(self.units_dir, f"u{unit:06d}.counts.npz")
        tmp = f"{path}.tmp.{os.getpid()}.npz"
        np.savez(tmp, ids=nz.astype(np.int64), counts=counts[nz].astype(np.int64))
        os.replace(tmp, path)
        write_json_atomic(self.marker(unit), result)

    def load_unit(self, unit: int, vocab_size: int) -> tuple[dict, np.ndarray]:
        with open(self.marker(unit), encoding="utf-8") as fh:
            result = json.load(fh)
        counts = np.zeros(vocab_size, dtype=np.int64)
        with np.load(os.path.join(self.units_dir, f"u{unit:06d}.counts.npz")) as sparse:
            counts[sparse["ids"]] = sparse["counts"]
        return result, counts

    # -- files-mode coordination ------------------------------------------------------------
    def ready_path(self, step_id: str) -> str:
        return os.path.join(self.ranks_dir, f"ready.{step_id}")

    def failed_path(self, step_id: str, rank: int) -> str:
        return os.path.join(self.ranks_dir, f"failed.{step_id}.{rank}")

    def mark_ready(self, step_id: str) -> None:
        write_json_atomic(self.ready_path(step_id), {"step": step_id})

    def mark_failed(self, step_id: str, rank: int, message: str, code: int = 1) -> None:
        """Tell the launch's other ranks (files mode) that ``rank`` stopped, and with which
        exit code (2: bad input, 1: a failure)."""
        try:
            os.makedirs(self.ranks_dir, exist_ok=True)
            write_json_atomic(self.failed_path(step_id, rank),
                              {"rank": rank, "error": message, "code": code})
        except OSError:
            pass  # best effort: the waiting rank times out instead

    def clear_other_launches(self, step_id: str) -> list[str]:
        """Rank 0: delete ready/failed markers of other launches (e.g. the attempt a Slurm
        requeue replaced); return their names. Theirs could only mislead this launch."""
        if not os.path.isdir(self.ranks_dir):
            return []
        stale = [n for n in sorted(os.listdir(self.ranks_dir))
                 if not (n == f"ready.{step_id}" or n.startswith(f"failed.{step_id}."))]
        for name in stale:
            try:
                os.remove(os.path.join(self.ranks_dir, name))
            except FileNotFoundError:
                pass
        return stale

    def failures(self, step_id: str) -> list[tuple[str, int]]:
        """``(message, exit code)`` of each rank of launch ``step_id`` that stopped."""
        out = []
        prefix = f"failed.{step_id}."
        if not os.path.isdir(self.ranks_dir):
            return out
        for name in sorted(os.listdir(self.ranks_dir)):
            if name.startswith(prefix) and ".tmp." not in name:
                with open(os.path.join(self.ranks_dir, name), encoding="utf-8") as fh:
                    info = json.load(fh)
                out.append((f"rank {info['rank']}: {info['error']}", int(info.get("code", 1))))
        return out
