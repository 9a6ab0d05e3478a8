"""Installing the package: pyproject.toml declares what requirements.txt pins; ``pip
install -e .`` in a fresh venv after torch gives working commands and keeps that torch;
every command answers ``--help`` cleanly.

The venv tests install for real: a ``python -m venv`` without system site-packages, torch
the way scripts/install.sh installs it, then ``pip install -e .`` with its declared
dependencies from PyPI. How fast each ``--help`` answers is measured by
benchmarks/help_latency.py, not asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO


def _help_commands() -> dict[str, list[str]]:
    """The commands benchmarks/help_latency.py times: one list for both."""
    spec = importlib.util.spec_from_file_location("help_latency",
                                                  REPO / "benchmarks" / "help_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.help_commands()


HELP_COMMANDS = _help_commands()


def _torch_pin() -> str:
    """The torch requirement of the lock (requirements.txt), e.g. ``torch==2.13.0``."""
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return next(line.strip() for line in lines if re.match(r"torch\s*==", line))


def _requirements(lines: list[str]) -> dict[str, str]:
    """name -> requirement as written (extras and specifier), for requirement strings."""
    reqs = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): str(r) for r in reqs}


def _lock(path: Path) -> list[str]:
    """The requirement lines of a requirements file (no comments, no ``-r`` includes)."""
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


def _venv_env(venv: Path) -> dict[str, str]:
    """The environment of a shell with ``venv`` activated, and nothing from this repo on the
    path (so ``pretrain`` can only come from the installed package)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
               PYTHONNOUSERSITE="1")
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path,
         timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode}\n--- stdout\n"
                    f"{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def test_pyproject_declares_exactly_what_requirements_txt_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = [*project["dependencies"], *extras["eval"], *extras["wandb"], *extras["dev"]]
    assert _requirements(declared) == _requirements(_lock(REPO / "requirements.txt"))


def test_the_gpu_extra_is_what_requirements_gpu_txt_adds():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    gpu = project["optional-dependencies"]["gpu"]
    assert _requirements(gpu) == _requirements(_lock(REPO / "requirements-gpu.txt"))


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory):
    """A bare venv with torch installed as scripts/install.sh installs it, then
    ``pip install -e .``; yields the venv, its environment, torch's wheel and pip's log.
    Removed afterwards (about 1.5 GB)."""
    root = tmp_path_factory.mktemp("install")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env, python = _venv_env(venv), str(venv / "bin" / "python")
    # --no-compile: no .pyc files for all of torch up front; imports write the few needed.
    pip = [python, "-m", "pip", "install", "--no-compile"]
    # torch from install.sh's source: pip's configured indexes and find-links, or
    # TORCH_INDEX_URL. Resolve first, so a host whose pip would pick PyPI's multi-GB CUDA
    # build fails here with the fix instead of downloading it.
    index = os.environ.get("TORCH_INDEX_URL")
    index_args = ["--index-url", index] if index else []
    report = root / "torch.json"
    _run([*pip, "--dry-run", "--no-deps", "--report", str(report), _torch_pin(),
          *index_args], env, root)
    url = unquote(json.loads(report.read_text())["install"][0]["download_info"]["url"])
    if not (index or url.startswith("file:") or "+cpu" in url):
        pytest.fail(f"pip would install torch from {url}, not a local or CPU wheel; set "
                    "TORCH_INDEX_URL to PyTorch's CPU index (as for scripts/install.sh)")
    _run([*pip, _torch_pin(), *index_args], env, root)
    proc = _run([*pip, "-e", str(REPO)], env, root)
    yield {"venv": venv, "env": env, "python": python, "torch_url": url,
           "pip_log": proc.stdout + proc.stderr}
    shutil.rmtree(venv, ignore_errors=True)


@pytest.mark.venv
def test_params_help_works_in_a_bare_venv_after_pip_install_e(installed_venv, tmp_path):
    # cwd outside the repo: `python -m` would otherwise import pretrain from the checkout.
    proc = _run([installed_venv["python"], "-m", "pretrain.params", "--help"],
                installed_venv["env"], tmp_path, timeout=120)
    assert proc.stdout.startswith("usage:")
    assert "--config" in proc.stdout


@pytest.mark.venv
def test_pip_install_e_keeps_the_torch_installed_before_it(installed_venv, tmp_path):
    proc = _run([installed_venv["python"], "-m", "pip", "list", "--format", "json"],
                installed_venv["env"], tmp_path)
    versions = {d["name"].lower(): d["version"] for d in json.loads(proc.stdout)}
    wheel = installed_venv["torch_url"].rsplit("/", 1)[-1]
    assert wheel.startswith(f"torch-{versions['torch']}-")
    assert not re.search(r"^\s*(Collecting|Downloading) torch\b", installed_venv["pip_log"],
                         re.MULTILINE)


@pytest.mark.venv
def test_the_declared_dependencies_import_every_module(installed_venv, tmp_path):
    # Every module of the three packages, imported in the venv: a dependency missing from
    # pyproject.toml fails here with its ModuleNotFoundError.
    script = (
        "import importlib, pkgutil\n"
        "for top in ('data_prep', 'megatron_patches', 'pretrain'):\n"
        "    package = importlib.import_module(top)\n"
        "    for info in pkgutil.walk_packages(package.__path__, top + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print('ok')\n")
    proc = _run([installed_venv["python"], "-W", "ignore", "-c", script],
                installed_venv["env"], tmp_path, timeout=300)
    assert proc.stdout.strip().endswith("ok")


@pytest.mark.parametrize("name", list(HELP_COMMANDS))
def test_help_exits_0_with_a_usage_line_and_nothing_on_stderr(name):
    proc = subprocess.run(HELP_COMMANDS[name], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"usage:", proc.stdout, re.IGNORECASE), proc.stdout[:500]
    assert proc.stderr == ""  # no warnings, deprecation notes or tracebacks before the help
