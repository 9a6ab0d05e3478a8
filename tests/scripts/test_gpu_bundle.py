"""``python scripts/gpu_check bundle-check``: what scripts/gpu_bundle.sh checks before it replaces
the bundle, and scripts/gpu_check.sh before it installs one on the GPU host.

gpu_bundle.sh itself downloads from PyPI, so it is not run here; these tests build small,
real wheel files (zip + METADATA) and check that every way a bundle can fail the GPU host
is caught, named, and exits 1.
"""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

CP312 = "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"


def make_wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any",
               requires: tuple[str, ...] = (), files: tuple[str, ...] = (),
               padding: int = 0) -> Path:
    """A minimal, valid wheel file."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-{tag}.whl"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
            *(f"Requires-Dist: {r}" for r in requires)]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA", "\n".join(meta) + "\n")
        zf.writestr(f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nTag: {tag}\n")
        for file in files:
            zf.writestr(file, b"\x7fELF")
        if padding:
            zf.writestr("padding.bin", bytes(padding), compress_type=zipfile.ZIP_STORED)
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """The shape of what gpu_bundle.sh builds: the five projects, their missing needs, and
    the pinned typing-extensions."""
    folder = tmp_path / "gpu_bundle"
    folder.mkdir()
    make_wheel(folder, "megatron-core", "0.16.1", CP312, ("torch>=2.6.0", "numpy",
               "packaging>=24.2", "wandb; extra == 'mlm'"), files=("megatron/helpers.so",))
    make_wheel(folder, "deepspeed", "0.19.8", requires=("hjson", "pydantic>=2.0.0",
               "torch>=2.0.0", "py-cpuinfo", "pytest<8.4.0; extra == 'dev'"))
    make_wheel(folder, "pydantic", "2.13.4", requires=("pydantic-core==2.46.4",
               "typing-extensions>=4.14.1", "email-validator; extra == 'email'"))
    make_wheel(folder, "pydantic-core", "2.46.4", CP312, ("typing-extensions>=4.14.1",))
    make_wheel(folder, "hjson", "3.1.0")
    make_wheel(folder, "zstandard", "0.25.0", CP312,
               ("cffi~=1.17; platform_python_implementation == 'PyPy'",))
    for name, version in (("webdataset", "1.0.2"), ("wids", "0.1.11")):
        make_wheel(folder, name, version, requires=("braceexpand", "numpy", "pyyaml"))
    make_wheel(folder, "braceexpand", "0.1.7", "py2.py3-none-any")
    make_wheel(folder, "typing-extensions", "4.16.0")
    return folder


def bundle_check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/gpu_check", "bundle-check", str(folder)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_a_complete_bundle_for_cpython_3_12_passes(bundle):
    done = bundle_check(bundle)
    assert done.returncode == 0, done.stderr
    assert "ok: 10 wheels" in done.stdout


def test_two_versions_of_one_project_are_refused(bundle):
    make_wheel(bundle, "hjson", "3.0.2")
    done = bundle_check(bundle)
    assert done.returncode == 1
    assert "2 versions of hjson: hjson-3.0.2-py3-none-any.whl, hjson-3.1.0" in done.stderr


def test_a_wheel_for_another_python_is_refused(bundle):
    (bundle / f"zstandard-0.25.0-{CP312}.whl").unlink()
    make_wheel(bundle, "zstandard", "0.25.0", "cp311-cp311-manylinux2014_x86_64")
    done = bundle_check(bundle)
    assert done.returncode == 1
    assert "zstandard-0.25.0-cp311-cp311-manylinux2014_x86_64.whl does not install on " \
           "CPython 3.12" in done.stderr


def test_a_need_neither_bundled_nor_on_the_host_is_refused(bundle):
    (bundle / "hjson-3.1.0-py3-none-any.whl").unlink()
    done = bundle_check(bundle)
    assert done.returncode == 1
    assert "deepspeed-0.19.8-py3-none-any.whl needs hjson, which is neither in the bundle " \
           "nor on the GPU host" in done.stderr


def test_a_bundled_need_of_another_version_is_refused(bundle):
    (bundle / f"pydantic_core-2.46.4-{CP312}.whl").unlink()
    make_wheel(bundle, "pydantic-core", "2.46.3", CP312)
    done = bundle_check(bundle)
    assert done.returncode == 1
    assert "needs pydantic-core==2.46.4; the bundle has pydantic-core 2.46.3" in done.stderr


def test_a_missing_project_is_refused(bundle):
    (bundle / "wids-0.1.11-py3-none-any.whl").unlink()
    done = bundle_check(bundle)
    assert done.returncode == 1
    assert "wids is missing from" in done.stderr


def test_deepspeed_with_compiled_ops_is_refused(bundle):
    (bundle / "deepspeed-0.19.8-py3-none-any.whl").unlink()
    make_wheel(bundle, "deepspeed", "0.19.8", files=("deepspeed/ops/adam/fused_adam_op.so",))
    done = bundle_check(bundle)
    assert done.returncode == 1
    assert "has compiled ops (deepspeed/ops/adam/fused_adam_op.so)" in done.stderr


def test_a_bundle_over_64_mib_is_refused(bundle):
    make_wheel(bundle, "padding", "1.0", padding=64 * 2**20)
    done = bundle_check(bundle)
    assert done.returncode == 1
    assert "over the 64 MiB a device run carries" in done.stderr


def test_a_bundle_without_its_own_typing_extensions_is_refused(bundle):
    (bundle / "typing_extensions-4.16.0-py3-none-any.whl").unlink()
    done = bundle_check(bundle)
    assert done.returncode == 1
    assert "typing-extensions is missing from" in done.stderr


def test_a_typing_extensions_older_than_pydantic_core_needs_is_refused(bundle):
    (bundle / "typing_extensions-4.16.0-py3-none-any.whl").unlink()
    make_wheel(bundle, "typing-extensions", "4.12.2")
    done = bundle_check(bundle)
    assert done.returncode == 1
    assert (f"pydantic_core-2.46.4-{CP312}.whl needs typing-extensions>=4.14.1; the bundle "
            "has typing-extensions 4.12.2") in done.stderr


def test_gpu_bundle_sh_pins_a_typing_extensions_pydantic_core_accepts():
    from packaging.specifiers import SpecifierSet

    pins = [line.split()[0] for line in (REPO / "scripts/gpu_bundle.sh").read_text().splitlines()
            if line.strip().startswith("typing-extensions==")]
    assert len(pins) == 1
    assert pins[0].split("==")[1] in SpecifierSet(">=4.14.1")
