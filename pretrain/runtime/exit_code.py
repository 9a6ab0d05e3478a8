"""The job's exit code, published by the ranks for the launcher before teardown.

srun reports 128+signal as soon as any task is killed, and ranks can end with different
codes (a corrupt shard: 2 on the rank that read it, 77 from the watchdog elsewhere). A
clean stop (75: saved, relaunch) must not become a failure because one rank was killed
in a slow teardown, and a final error (2) must not become a retried hang (77).
``slurm/launch_pretrain.sh`` sets ``LEV_EXIT_CODE_FILE``; the file, when present, is the
job's code, and srun's status is the fallback.

Who writes: a code every rank reached through a collective (finished, stopped on an
agreed signal or budget, non-finite loss) is published by rank 0 alone; an error a rank
raised on its own (config/data error, unreadable checkpoint) by that rank. The first
publication wins: it is created with a hard link, atomic and exclusive on POSIX and NFS
file systems, so a reader never sees half a file and a later code never overwrites the
first verdict.
"""

from __future__ import annotations

import logging
import os

from pretrain.runtime.files import create_exclusive

__all__ = ["EXIT_CODE_FILE_ENV", "publish_exit_code"]

log = logging.getLogger("pretrain")

#: Set by slurm/launch_pretrain.sh (SAVE_DIR/.launcher/job-ID/exit_code.runN).
EXIT_CODE_FILE_ENV = "LEV_EXIT_CODE_FILE"


def publish_exit_code(code: int, *, rank: int, collective: bool) -> bool:
    """Publish ``code`` to ``$LEV_EXIT_CODE_FILE`` unless a code is there already.

    Args:
        code: the process exit code (:class:`pretrain.runtime.stopping.ExitCode`).
        rank: this process's global rank.
        collective: every rank reached ``code`` through a collective, so rank 0 speaks for
            all; ``False`` for a verdict of this rank alone.

    Returns:
        Whether this call published the code. Nothing is raised: without the file the
        launcher falls back to srun's status, so a failed write only costs precision.
    """
    path = os.environ.get(EXIT_CODE_FILE_ENV)
    if not path or (collective and rank != 0):
        return False
    try:
        # A fresh name, created exclusively: a fixed one could be a planted symlink.
        tmp = create_exclusive(os.path.dirname(path) or ".", f"{os.path.basename(path)}.rank{rank}.",
                               f"{int(code)}\n".encode(), fsync=True)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    except OSError as exc:
        log.warning("could not publish exit code %d to %s=%s (%s); the launcher falls back "
                    "to srun's status", code, EXIT_CODE_FILE_ENV, path, exc)
        return False
    return True
