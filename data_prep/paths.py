"""Paths read from a listing (a shard list, a manifest, a checkpoint's ``meta.json``) stay
inside the listing's directory.

A listing is data that someone else may have written. An entry such as ``../x.tar``,
``/etc/shadow`` or ``/dev/zero`` would make the reader checksum, open or hang on a file
outside the directory it was asked to read. Every entry must be a relative path that,
with symlinks resolved, names something inside that directory; anything else is refused
with :class:`PathOutsideError` (exit 78 in ``pretrain.train``, ``docs/trust.md``).
"""

from __future__ import annotations

import os

__all__ = ["PathOutsideError", "path_inside"]


class PathOutsideError(Exception):
    """A listed path is absolute or leads outside its directory (exit 78)."""


def path_inside(root: str | os.PathLike, entry: object, *, listed_in: str | os.PathLike,
                fix: str) -> str:
    """``root/entry``, after checking that it stays inside ``root``.

    Args:
        root: the directory the listing describes.
        entry: the path as listed (must be a non-empty relative ``str``).
        listed_in: the listing, named in the error.
        fix: what to do about a bad entry, appended to the error.

    Raises:
        PathOutsideError: ``entry`` is not a string, is absolute, or leaves ``root``
            (through ``..`` or a symlink).
    """
    if not isinstance(entry, str) or not entry or "\0" in entry or os.path.isabs(entry):
        raise PathOutsideError(
            f"{listed_in}: entry {entry!r} is not a relative path inside {root}; {fix}")
    joined = os.path.join(root, entry)
    real_root = os.path.realpath(root)
    real = os.path.realpath(joined)
    if real == real_root or os.path.commonpath([real_root, real]) != real_root:
        raise PathOutsideError(
            f"{listed_in}: entry {entry!r} leads outside {root} (to {real}); {fix}")
    return joined
