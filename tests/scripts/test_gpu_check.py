"""scripts/gpu_check.sh's dry run: the one-shot GPU check's own code, every part, on CPU.

``GPU_CHECK_DRY_RUN=1`` runs the same orchestrator, workers and commands as on the GPU host
(1.2B lev/tied throughput, data prep, train -> save -> resume, evaluation), at tiny shapes,
in fp32, on gloo, without installing the wheel bundle (this machine has the packages), so
the script cannot rot between the rare sessions that get a GPU. One run serves every test;
``GPU_CHECK_FAULT_OOM_ABOVE_LAYERS=1`` makes the 2-layer throughput runs report
out-of-memory, so the retry with fewer layers runs too.
"""

import json
import math
import subprocess

import pytest

from tests.conftest import REPO, cpu_env

pytestmark = pytest.mark.multiproc

EVERY_PART = ["install", "environment", "throughput_lev", "throughput_tied", "lev_vs_tied",
              "data", "train_resume", "evaluate"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """(exit code, gpu_check.json, gpu_check.log) of one dry run."""
    root = tmp_path_factory.mktemp("gpu_check")
    env = cpu_env(GPU_CHECK_DRY_RUN="1", GPU_CHECK_FAULT_OOM_ABOVE_LAYERS="1",
                  OUT=str(root / "out"), TMPDIR=str(root))
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)
    summary = root / "out" / "gpu_check.json"
    assert summary.is_file(), (f"no summary (exit {done.returncode})\n{done.stdout[-6000:]}"
                               f"\n{done.stderr[-3000:]}")
    return done.returncode, json.loads(summary.read_text()), (root / "out" / "gpu_check.log").read_text()


def test_every_part_passes_and_the_script_exits_0(dry_run):
    code, summary, log = dry_run
    statuses = {part: entry["status"] for part, entry in summary["parts"].items()}
    expected = {part: "pass" for part in EVERY_PART} | {"install": "skipped"}
    assert statuses == expected, log[-6000:]
    assert code == 0 and summary["ok"] and summary["finished"]


def test_the_dry_run_installs_nothing_and_says_why(dry_run):
    install = dry_run[1]["parts"]["install"]
    assert install["status"] == "skipped"
    assert "GPU_CHECK_DRY_RUN=1" in install["reason"]


def test_the_environment_names_the_packages_and_the_layer_spec(dry_run):
    env = dry_run[1]["parts"]["environment"]
    assert env["missing_modules"] == []
    assert env["versions"]["megatron-core"] == "0.16.1"
    assert env["versions"]["deepspeed"] == "0.19.8"
    assert env["cuda_available"] is False and env["expected_layer_spec"] == "local"


def test_throughput_of_lev_and_tied_is_measured_over_real_optimizer_steps(dry_run):
    for kind in ("lev", "tied"):
        part = dry_run[1]["parts"][f"throughput_{kind}"]
        assert part["embedding"] == kind and part["config"] == f"pretrain/configs/{kind}_1b2.yaml"
        assert part["timed_steps"] >= 1 and part["accumulation_steps"] == 2
        assert part["tokens_per_s"] > 0 and part["model_tflops_per_device"] > 0
        assert part["params"] > 0 and part["peak_host_rss_gib"] > 0
        assert part["backend"] == "gloo" and part["param_dtype"] == "torch.float32"


def test_mfu_is_stated_only_against_a_known_peak(dry_run):
    part = dry_run[1]["parts"]["throughput_lev"]
    assert part["mfu"] is None and part["peak_tflops"] is None
    assert "CPU" in part["mfu_reason"]


def test_an_out_of_memory_is_retried_with_fewer_layers_and_said(dry_run):
    for kind in ("lev", "tied"):
        part = dry_run[1]["parts"][f"throughput_{kind}"]
        assert part["config_num_layers"] == 2 and part["num_layers"] == 1
        assert part["layers_reduced"] is True
        assert [a["num_layers"] for a in part["attempts"]] == [2]
        assert "out of memory at 2" in part["note"]


def test_lev_over_tied_is_the_ratio_of_their_step_times(dry_run):
    parts = dry_run[1]["parts"]
    ratio = parts["lev_vs_tied"]["step_time_ratio"]
    lev, tied = parts["throughput_lev"]["step_time_s"], parts["throughput_tied"]["step_time_s"]
    assert ratio == pytest.approx(lev / tied) and ratio > 0


def test_the_resumed_run_repeats_the_uninterrupted_losses_bit_for_bit(dry_run):
    part = dry_run[1]["parts"]["train_resume"]
    assert part["resumed_steps"] == [5, 6, 7, 8]
    assert part["resumed_losses"] == part["straight_losses"]
    assert part["bitwise_equal"] is True and part["max_abs_diff"] == 0
    assert part["same_samples"] is True
    assert "repeat_of_straight_run" not in part  # only run when the losses differ


def test_the_small_run_trains_on_gloo_in_fp32_with_deterministic_kernels(dry_run):
    part = dry_run[1]["parts"]["train_resume"]
    assert part["backend"] == "gloo" and part["precision"] == "fp32"
    assert part["layer_spec"] == "local"
    assert part["determinism"]["torch.use_deterministic_algorithms"].startswith("True")


def test_evaluation_scores_the_final_checkpoint(dry_run):
    part = dry_run[1]["parts"]["evaluate"]
    assert part["step"] == 8 and part["embedding"] == "lev" and part["tokens"] > 0
    assert part["ppl"] == pytest.approx(math.exp(part["loss"]))


def test_the_log_holds_every_parts_output(dry_run):
    log = dry_run[2]
    for part in EVERY_PART:
        assert f"== {part}:" in log
    assert "[train_resume]" in log and "resumed from" in log
    assert "[evaluate]" in log and "eval.json" in log


def test_the_run_stays_within_its_time_budget(dry_run):
    summary = dry_run[1]
    assert summary["wall_s"] < summary["budget_s"] == 360
