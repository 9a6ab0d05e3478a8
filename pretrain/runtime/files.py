"""Small files replaced atomically, through a temporary file no one else can have planted.

A fixed temporary name (``meta.json.tmp``) in a directory that others can write is an
attack: a symlink planted under that name makes ``open(tmp, "w")`` truncate and write
whatever file it points to, with the job owner's rights. Here the temporary file is
created by :func:`tempfile.mkstemp` in the target's own directory (``O_CREAT | O_EXCL``:
never an existing file, never through a symlink), then renamed over the target; a rename
replaces a symlink at the target itself rather than following it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["create_exclusive", "current_umask", "fsync_dir", "write_atomic"]


def current_umask() -> int:
    """This process's umask, read without changing it (``os.umask`` would, for a moment,
    for every thread)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o077  # unknown: assume the strictest


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or creation in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_exclusive(directory: str | os.PathLike, prefix: str, data: bytes, *,
                     fsync: bool = False) -> str:
    """A new file in ``directory`` holding ``data``, under a fresh name starting with
    ``prefix`` and ending in ``.tmp``; mode 0666 less the umask (as ``open`` would give).
    Returns its path; the caller renames or links it, or unlinks it."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def write_atomic(path: str | os.PathLike, data: str | bytes, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` in one rename: readers see the old or the new file.

    Args:
        path: the file to replace (a symlink there is replaced, not followed).
        data: its new content (``str`` is written as UTF-8).
        durable: fsync the file and its directory, so the new content survives a node crash.
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = create_exclusive(path.parent, f".{path.name}.", raw, fsync=durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
