"""Which copy of each imported package ran: its version, and whether it came from the
wheel bundle, the host, or this repository.

On the GPU host the bundle is installed into a throw-away directory put first on
PYTHONPATH, in front of the host's own packages; a package both provide (typing_extensions)
is imported from whichever comes first. The version reported is that of the copy actually
imported (read from the dist-info beside it), not whatever ``pip list`` would show first.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["imported_packages", "origin_of"]


def _canonical(name: str) -> str:
    """PEP 503's normalised project name (``typing_extensions`` -> ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def origin_of(path: str | Path | None, bundle_site: str | Path | None,
              repo: str | Path | None) -> str:
    """``bundle``, ``repo`` or ``host``: where the file at ``path`` was installed."""
    if path is None:
        return "host"
    resolved = Path(path).resolve()
    for root, name in ((bundle_site, "bundle"), (repo, "repo")):
        if root and resolved.is_relative_to(Path(root).resolve()):
            return name
    return "host"


def _module_path(module: ModuleType) -> str | None:
    path = getattr(module, "__file__", None)
    if path is None:  # a namespace package: its first portion
        path = next(iter(getattr(module, "__path__", None) or []), None)
    return path


def _sys_path_root(path: str) -> str | None:
    """The ``sys.path`` entry ``path`` was imported from (the longest that contains it)."""
    resolved = Path(path).resolve()
    roots = [entry for entry in sys.path if entry and Path(entry).is_dir()
             and resolved.is_relative_to(Path(entry).resolve())]
    return max(roots, key=lambda e: len(str(Path(e).resolve())), default=None)


def _version_beside(dist: str, path: str) -> str | None:
    """The version in ``dist``'s dist-info on the same ``sys.path`` entry as ``path``."""
    root = _sys_path_root(path)
    found = list(metadata.distributions(name=dist, path=[root])) if root else []
    if found:
        return found[0].version
    try:  # an editable install (this repo), or metadata elsewhere: the first one found
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def imported_packages(modules: Mapping[str, ModuleType], bundle_site: str | Path | None,
                      repo: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Every installed distribution with a top-level module in ``modules`` (``sys.modules``).

    Returns ``{distribution: {"version", "origin", "module", "path", "modules"}}`` sorted by
    name; ``module`` is the one named like the distribution where there is one (torch, not
    functorch). The standard library (no distribution) is left out.
    """
    by_module = metadata.packages_distributions()
    imported: dict[str, list[str]] = {}
    for name, module in list(modules.items()):
        if "." not in name and name in by_module and module is not None:
            for dist in by_module[name]:
                imported.setdefault(_canonical(dist), []).append(name)
    out: dict[str, dict[str, Any]] = {}
    for dist, names in sorted(imported.items()):
        names.sort()
        name = next((n for n in names if _canonical(n) == dist), names[0])
        path = _module_path(modules[name])
        out[dist] = {"version": _version_beside(dist, path) if path else None,
                     "origin": origin_of(path, bundle_site, repo), "module": name,
                     "path": path, "modules": names}
    return out
