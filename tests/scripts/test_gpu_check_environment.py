"""The GPU check's environment part (scripts/gpu_check/environment.py, probe.py,
packages.py): what it tolerates, what it reports, and what it lets rule out the GPU parts.

Unit tests on CPU: the failures they specify (a hung nvidia-smi, a hung all-reduce, a
killed probe) cannot be produced on demand on a real GPU host.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scripts.gpu_check.environment import blocking_reason, nvidia_smi
from scripts.gpu_check.packages import imported_packages, origin_of
from scripts.gpu_check.plan import PART_LIMITS_S
from scripts.gpu_check.probe import EXIT_HUNG, bounded
from scripts.gpu_check.runner import Runner, merged_json
from tests.conftest import REPO


def fake_nvidia_smi(folder: Path, body: str) -> None:
    """An executable ``nvidia-smi`` in ``folder`` running the shell ``body``."""
    folder.mkdir(exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n{body}\n")
    smi.chmod(0o755)


def test_a_hung_nvidia_smi_is_killed_after_its_timeout_and_reported(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", "sleep 30")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    began = time.monotonic()
    assert nvidia_smi(timeout_s=0.5) == "timed out after 0.5 s"
    assert time.monotonic() - began < 5


def test_nvidia_smi_output_or_failure_becomes_text(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert nvidia_smi() == "not found on PATH"
    fake_nvidia_smi(tmp_path / "bin", "echo 'NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB'")
    assert nvidia_smi() == "NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB"
    fake_nvidia_smi(tmp_path / "bin", "echo 'NVIDIA-SMI has failed'; exit 9")
    assert nvidia_smi() == "exited 9: NVIDIA-SMI has failed"


def test_the_environment_part_may_use_90_seconds(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_CHECK_T0", str(time.time()))
    runner = Runner(tmp_path / "out", tmp_path / "work", dry_run=True)
    assert PART_LIMITS_S["environment"][0] == 90
    assert runner.allowance("environment", time.time()) == pytest.approx(90, abs=1)


def test_only_an_explicit_no_cuda_rules_out_the_gpu_parts_among_device_findings():
    assert blocking_reason({"cuda_available": False}, dry_run=False) == (
        "torch reports no CUDA device (environment part)")
    # A probe killed before it reached torch (a cold start over the cap) proves nothing.
    killed = {"status": "fail", "stage": "python", "reason": "the probe was killed at its "
              "time limit after stage 'python'"}
    assert blocking_reason(killed, dry_run=False) is None
    # A device without bf16 fails the environment part but the GPU parts still say how.
    assert blocking_reason({"cuda_available": True, "bf16_supported": False},
                           dry_run=False) is None


def test_a_training_import_that_raised_rules_out_the_gpu_parts_and_is_named():
    env = {"cuda_available": True, "imports": {
        "megatron.core": {"ok": True, "s": 3.0},
        "deepspeed": {"ok": False, "error": "ImportError: cannot import name 'Sentinel'"},
        "matplotlib": {"ok": False, "error": "ModuleNotFoundError: matplotlib"}}}
    reason = blocking_reason(env, dry_run=False)
    assert reason == ("training cannot import deepspeed: ImportError: cannot import name "
                      "'Sentinel' (environment part)")
    # An import only evaluation's plots need does not stop training.
    env["imports"]["deepspeed"] = {"ok": True, "s": 1.0}
    assert blocking_reason(env, dry_run=False) is None


def test_a_hung_all_reduce_rules_out_the_gpu_parts():
    env = {"cuda_available": True, "all_reduce": {"ok": False, "hung": True,
                                                  "error": "no result within 20 s"}}
    assert blocking_reason(env, dry_run=False) == (
        "the world-size-1 nccl all-reduce failed: no result within 20 s (environment part)")


def test_bounded_abandons_a_call_that_hangs_and_reports_one_that_raises():
    release = threading.Event()
    began = time.monotonic()
    hung = bounded(lambda: release.wait() and {}, timeout_s=0.3)
    assert time.monotonic() - began < 2
    release.set()
    assert hung == {"ok": False, "hung": True, "error": "no result within 0.3 s"}
    assert bounded(lambda: 1 / 0, 5) == {"ok": False,
                                         "error": "ZeroDivisionError: division by zero"}
    assert bounded(lambda: {"ok": True, "backend": "gloo"}, 5) == {"ok": True, "backend": "gloo"}


def test_a_hung_all_reduce_is_reported_and_the_probe_exits_at_once():
    code = ("import threading; from scripts.gpu_check.probe import reduce_stage; "
            "reduce_stage(lambda: threading.Event().wait() or {}, 0.5); print('not reached')")
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert time.monotonic() - began < 30
    assert done.returncode == EXIT_HUNG
    assert merged_json(done.stdout)["all_reduce"] == {"ok": False, "hung": True,
                                                      "error": "no result within 0.5 s"}
    assert "not reached" not in done.stdout


def test_a_killed_probe_still_reports_the_stages_it_finished():
    output = ('{"stage": "python", "python": "3.12.3"}\n'
              "[WARNING] some library's log line\n"
              '{"stage": "torch", "cuda_available": true, "torch": {"version": "2.11.0"}}\n'
              '{"stage": "imp')  # cut off mid-line by the kill
    assert merged_json(output) == {"stage": "torch", "python": "3.12.3",
                                   "cuda_available": True, "torch": {"version": "2.11.0"}}


def make_site(root: Path, module: str, dist: str, version: str) -> Path:
    """A site directory holding ``module`` installed as ``dist`` ``version``."""
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(module + "\n")
    return root


def test_packages_say_which_copy_was_imported_the_bundles_or_the_hosts(tmp_path):
    bundle = make_site(tmp_path / "bundle", "lev_fake_pkg", "lev-fake-pkg", "4.16.0")
    host = make_site(tmp_path / "host", "lev_fake_pkg", "lev-fake-pkg", "4.12.2")
    make_site(host, "lev_fake_other", "lev-fake-other", "1.0")
    # The bundle first on the path, as gpu_check.sh puts it: its copy is the one imported.
    code = ("import json, sys; import lev_fake_pkg, lev_fake_other, yaml; "
            "from scripts.gpu_check.packages import imported_packages; "
            f"print(json.dumps(imported_packages(sys.modules, {str(bundle)!r}, {str(REPO)!r})))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(bundle), str(host), str(REPO)]))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    packages = json.loads(done.stdout)
    assert packages["lev-fake-pkg"]["version"] == "4.16.0"  # not the host's 4.12.2
    assert packages["lev-fake-pkg"]["origin"] == "bundle"
    assert packages["lev-fake-other"] | {"path": None} == {
        "version": "1.0", "origin": "host", "module": "lev_fake_other", "path": None,
        "modules": ["lev_fake_other"]}
    assert packages["pyyaml"]["origin"] == "host" and packages["pyyaml"]["module"] == "yaml"
    assert "json" not in packages and "sys" not in packages  # the standard library


def test_the_origin_of_a_file_is_the_bundle_the_repo_or_the_host(tmp_path):
    site = tmp_path / "site"
    assert origin_of(site / "torch" / "__init__.py", site, REPO) == "bundle"
    assert origin_of(REPO / "pretrain" / "__init__.py", site, REPO) == "repo"
    assert origin_of("/usr/lib/python3/dist-packages/yaml/__init__.py", site, REPO) == "host"
    assert origin_of("/usr/lib/python3/dist-packages/yaml/__init__.py", None, None) == "host"


def test_imported_packages_leaves_out_modules_without_a_distribution():
    assert imported_packages({"os": os, "json": json}, None) == {}


@pytest.mark.multiproc
def test_on_a_host_without_cuda_the_check_skips_the_training_parts_and_says_why(tmp_path):
    """The real (not dry) run on this CPU machine: no bundle, torch sees no CUDA."""
    from tests.conftest import cpu_env

    env = cpu_env(OUT=str(tmp_path / "out"), TMPDIR=str(tmp_path),
                  GPU_BUNDLE=str(tmp_path / "no_bundle"))
    env.pop("GPU_CHECK_DRY_RUN", None)
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    parts = summary["parts"]
    assert done.returncode == 1 and summary["finished"] and not summary["ok"]
    assert parts["install"]["status"] == "fail"
    assert parts["environment"]["status"] == "fail"
    assert "torch sees no CUDA device" in parts["environment"]["reason"]
    assert parts["environment"]["stage"] == "done"  # the probe still ran to the end
    for part in ("throughput_lev", "throughput_tied", "train_resume", "evaluate"):
        assert parts[part] == {"status": "skipped",
                               "reason": "torch reports no CUDA device (environment part)"}
    assert parts["data"]["status"] == "pass"  # CPU work goes on
