"""``bundle-check DIR``: can the GPU host (CPython 3.12, manylinux x86_64) install DIR?

scripts/gpu_bundle.sh runs it before it replaces the bundle, scripts/gpu_check.sh before
it installs one: a bundle that cannot install is named and refused here, on the CPU
machine, not discovered during the few minutes a GPU host is available.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["BUNDLE_REQUIRED", "bundle_problems", "cmd_bundle_check"]

BUNDLE_LIMIT_BYTES = 64 * 2**20  # what travels with one device run
BUNDLE_REQUIRED = {"megatron-core", "deepspeed", "webdataset", "wids", "zstandard",
                   # pydantic-core 2.46 needs typing_extensions >= 4.14.1 (`Sentinel`); the
                   # host's copy is whatever its image shipped, so the bundle pins its own.
                   "typing-extensions"}
HOST_PROVIDES = {  # on the GPU host already (KINDS.md's package list); not bundled
    "torch", "numpy", "packaging", "psutil", "py-cpuinfo", "msgpack", "ninja", "einops",
    "tqdm", "pyyaml", "nvidia-ml-py", "tokenizers", "pyarrow", "transformers", "safetensors",
    "mpi4py", "tensorboard", "matplotlib"}
TARGET_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3",
                  "sys_platform": "linux", "platform_system": "Linux",
                  "platform_machine": "x86_64", "os_name": "posix",
                  "implementation_name": "cpython", "platform_python_implementation": "CPython",
                  "extra": ""}


def _target_tags() -> set:
    """Wheel tags CPython 3.12 on manylinux x86_64 (glibc up to 2.39) installs."""
    from packaging import tags

    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(39, 16, -1)]
    platforms.append("manylinux2014_x86_64")
    return (set(tags.cpython_tags((3, 12), abis=["cp312", "abi3", "none"], platforms=platforms))
            | set(tags.compatible_tags((3, 12), "cp312", platforms)))


def _read_wheel(wheel: Path) -> tuple[list[str], list[str]]:
    """A wheel's ``Requires-Dist`` lines and its file names."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode("utf-8").splitlines()
    return [line.split(":", 1)[1].strip() for line in lines
            if line.startswith("Requires-Dist:")], names


def bundle_problems(bundle: Path) -> list[str]:
    """Why the GPU host could not install and run ``bundle`` (empty: it can)."""
    from packaging.requirements import Requirement
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    if not bundle.is_dir():
        return [f"{bundle} is not a directory: build it with bash scripts/gpu_bundle.sh (and "
                "name it in the device run's carry)"]
    problems = []
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    if size > BUNDLE_LIMIT_BYTES:
        problems.append(f"{bundle} holds {size / 2**20:.1f} MiB, over the "
                        f"{BUNDLE_LIMIT_BYTES >> 20} MiB a device run carries")
    target = _target_tags()
    found: dict[str, list[tuple[Path, Any]]] = {}
    for wheel in sorted(bundle.glob("*.whl")):
        try:
            name, version, _, wheel_tags = parse_wheel_filename(wheel.name)
        except InvalidWheelFilename:
            problems.append(f"{wheel.name} is not a wheel's file name")
            continue
        found.setdefault(name, []).append((wheel, version))
        if not wheel_tags & target:
            problems.append(f"{wheel.name} does not install on CPython 3.12 manylinux x86_64; "
                            "download it with --python-version 3.12 --platform manylinux...")
    for name, copies in found.items():
        if len(copies) > 1:
            problems.append(f"{len(copies)} versions of {name}: "
                            f"{', '.join(w.name for w, _ in copies)}; keep one (pip refuses both)")
    problems += [f"{name} is missing from {bundle}" for name in sorted(BUNDLE_REQUIRED - set(found))]
    for name, ((wheel, _), *_) in found.items():
        try:
            requires, files = _read_wheel(wheel)
        except (zipfile.BadZipFile, StopIteration, UnicodeDecodeError):
            problems.append(f"{wheel.name} is not a readable wheel (no .dist-info/METADATA)")
            continue
        compiled = [f for f in files if f.endswith(".so")]
        if name == "deepspeed" and compiled:
            problems.append(f"{wheel.name} has compiled ops ({compiled[0]}); build it with "
                            "DS_BUILD_OPS=0 and no torch in the build environment")
        for line in requires:
            req = Requirement(line)
            dep = canonicalize_name(req.name)
            if req.marker is not None and not req.marker.evaluate(TARGET_MARKERS):
                continue  # an extra, or another platform
            if dep in found:
                have = found[dep][0][1]
                if not req.specifier.contains(have, prereleases=True):
                    problems.append(f"{wheel.name} needs {line}; the bundle has {dep} {have}")
            elif dep not in HOST_PROVIDES:
                problems.append(f"{wheel.name} needs {req.name}, which is neither in the bundle "
                                "nor on the GPU host; add it to scripts/gpu_bundle.sh")
    return problems


def cmd_bundle_check(bundle: Path) -> int:
    """Print each problem of ``bundle`` (exit 1) or a one-line ok (exit 0)."""
    problems = bundle_problems(bundle)
    for problem in problems:
        print(f"bundle-check: {problem}", file=sys.stderr)
    if not problems:
        size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
        print(f"bundle-check: {bundle} ok: {len(list(bundle.glob('*.whl')))} wheels, "
              f"{size / 2**20:.1f} MiB, CPython 3.12 manylinux x86_64")
    return 1 if problems else 0
