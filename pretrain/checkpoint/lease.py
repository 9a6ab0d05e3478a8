"""One writer per save_dir: a lease file naming the job that writes there.

Two live jobs on one ``checkpoint.save_dir`` (a second sbatch of the same run, a
copy-pasted SAVE_DIR) would delete or set aside each other's tags: each prunes what it
did not write and treats the other's newer tags as an abandoned timeline. So rank 0
holds ``save_dir/.lease.json`` (job id, host, pid, when renewed) for the whole run,
renews it from a background thread, and removes it at exit. A job that finds another
job's lease:

* takes it over when it names the same job (a requeued or restarted Slurm job keeps
  its id), when its process is gone (same host), or when it was not renewed for
  ``checkpoint.lease_timeout_s`` (the holder died elsewhere: a crashed node renews
  nothing);
* otherwise waits up to ``lease_timeout_s`` for it to be released or go stale, then
  refuses to start (exit 2), naming the holder.

Renewal times are wall-clock times of the holder's host; cluster nodes keep their
clocks within a second of each other (NTP), far inside the timeout. The Slurm
templates' ``--dependency=singleton`` orders jobs of one name; the lease also covers
jobs of other names, torchrun and mpiexec runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pretrain.config import ConfigError
from pretrain.runtime.distributed import broadcast_object
from pretrain.runtime.files import write_atomic
from pretrain.runtime.launcher import node_name

__all__ = ["LEASE", "SaveDirInUseError", "SaveDirLease", "job_identity", "lease_save_dir"]

log = logging.getLogger(__name__)

#: Renewal times further ahead of this host's clock than this (or the lease timeout) are not
#: a holder's clock running fast but a lease that would never go stale: taken over.
_CLOCK_SKEW_S = 300.0

LEASE = ".lease.json"
#: How often a waiting job looks at the lease again.
_POLL_S = 1.0


class SaveDirInUseError(ConfigError):
    """Another live job holds the save_dir's lease (exit 2)."""


def job_identity(env: dict[str, str] | None = None) -> str:
    """This job in words: the Slurm job, the torchrun run, else rank 0's process."""
    env = dict(os.environ) if env is None else env
    if env.get("SLURM_JOB_ID"):
        return f"slurm job {env['SLURM_JOB_ID']}"
    run_id = env.get("TORCHELASTIC_RUN_ID", "none")
    if run_id != "none":  # torchrun's default rendezvous id names no run
        return f"torchrun run {run_id}"
    return f"process {os.getpid()} on {node_name()}"


@dataclass(frozen=True, slots=True)
class Holder:
    """What the lease file says."""

    job: str
    host: str
    pid: int
    renewed: float

    def describe(self, now: float) -> str:
        return (f"{self.job} (rank 0 is pid {self.pid} on {self.host}; lease renewed "
                f"{max(0.0, now - self.renewed):.0f} s ago)")


class SaveDirLease:
    """The lease of ``save_dir`` held by this job's rank 0 (``timeout_s=0``: no lease)."""

    def __init__(self, save_dir: str | Path, timeout_s: float, job: str | None = None) -> None:
        self.path = Path(save_dir) / LEASE
        self.timeout_s = timeout_s
        self.me = Holder(job or job_identity(), node_name(), os.getpid(), 0.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ taking
    def acquire(self) -> None:
        """Take the lease, waiting up to ``timeout_s`` for another live job's to end.

        Raises:
            SaveDirInUseError: another job still holds it, naming that job.
        """
        deadline = time.monotonic() + self.timeout_s
        while True:
            holder = self.read()
            why = self._why_free(holder)
            if why is not None:
                if holder is not None and holder.job != self.me.job:
                    log.warning("taking over the lease of %s from %s: %s", self.path.parent,
                                holder.job, why)
                self._write()
                self._start_renewing()
                return
            alive_here = holder.host == self.me.host and _pid_alive(holder.pid)
            if alive_here or time.monotonic() >= deadline:
                raise SaveDirInUseError(self._refusal(holder))
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))

    def _why_free(self, holder: Holder | None) -> str | None:
        """Why this job may take the lease now, or ``None`` while another job holds it."""
        if holder is None:
            return "no lease"
        if holder.job == self.me.job:
            return "the same job (restarted)"
        if holder.host == self.me.host and not _pid_alive(holder.pid):
            return f"its process {holder.pid} on {holder.host} is gone"
        age = time.time() - holder.renewed
        if age > self.timeout_s:
            return f"not renewed for {age:.0f} s (checkpoint.lease_timeout_s={self.timeout_s:g})"
        if -age > max(self.timeout_s, _CLOCK_SKEW_S):
            # No holder's clock is that far ahead: a planted lease that would never go stale.
            return (f"renewed {-age:.0f} s in the future (no clock is more than "
                    f"{max(self.timeout_s, _CLOCK_SKEW_S):g} s ahead)")
        return None

    def _refusal(self, holder: Holder) -> str:
        return (f"checkpoint.save_dir={self.path.parent} is in use by "
                f"{holder.describe(time.time())}: two jobs writing one save_dir delete and "
                f"set aside each other's checkpoints. Let that job finish (or cancel it), or "
                f"use another checkpoint.save_dir; a lease whose job died is taken over "
                f"after checkpoint.lease_timeout_s={self.timeout_s:g} s ({self.path})")

    # ------------------------------------------------------------------ holding
    def read(self) -> Holder | None:
        """The lease on disk (``None``: none, or unreadable: a torn write of a dead job)."""
        try:
            record = json.loads(self.path.read_text())
            return Holder(str(record["job"]), str(record["host"]), int(record["pid"]),
                          float(record["renewed"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write(self) -> None:
        write_atomic(self.path, json.dumps({**asdict(self.me), "renewed": time.time()}))

    def _start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew, name="lev-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        """Renew every quarter timeout from this thread: a renewal stuck in a stalled file
        system blocks neither training nor the watchdog."""
        while not self._stop.wait(self.timeout_s / 4):
            holder = self.read()
            if holder is not None and holder.job != self.me.job:
                log.error("the lease of %s was taken over by %s (this job did not renew it "
                          "within checkpoint.lease_timeout_s=%g s): two jobs now write there",
                          self.path.parent, holder.describe(time.time()), self.timeout_s)
                return
            with contextlib.suppress(OSError):
                self._write()

    def release(self) -> None:
        """Stop renewing and remove the lease if it is still this job's."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout=1)
        self._thread = None
        holder = self.read()
        if holder is not None and holder.job == self.me.job and holder.pid == self.me.pid:
            with contextlib.suppress(OSError):
                self.path.unlink()


def lease_save_dir(save_dir: str | Path, timeout_s: float, rank: int) -> SaveDirLease | None:
    """Rank 0 takes the lease; every rank raises the same refusal (call on every rank)."""
    lease, refusal = None, None
    if rank == 0 and timeout_s > 0:
        lease = SaveDirLease(save_dir, timeout_s)
        try:
            lease.acquire()
        except SaveDirInUseError as exc:
            refusal = str(exc)
    refusal = broadcast_object(refusal)
    if refusal:
        raise SaveDirInUseError(refusal)
    return lease


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
