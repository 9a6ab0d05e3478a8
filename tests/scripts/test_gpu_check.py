"""scripts/gpu_check.sh's dry run: the one-shot GPU check's own code, every part, on CPU.

``GPU_CHECK_DRY_RUN=1`` runs the same orchestrator, workers and commands as on the GPU host
(environment probe, 1.2B lev/tied throughput, data prep, bf16 train -> save -> resume,
evaluation), at tiny shapes, on gloo, without installing the wheel bundle (this machine has
the packages), so the script cannot rot between the rare sessions that get a GPU. One run
serves every test; ``GPU_CHECK_FAULT_OOM_ABOVE_MICRO_BATCH=1`` makes the micro-batch-2
throughput runs report out-of-memory, so the retry at a smaller micro-batch runs too.
"""

import json
import math
import subprocess
from importlib import metadata

import pytest

from tests.conftest import REPO, cpu_env

pytestmark = pytest.mark.multiproc

EVERY_PART = ["install", "environment", "throughput_lev", "throughput_tied", "lev_vs_tied",
              "data", "train_resume", "evaluate"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """(exit code, gpu_check.json, gpu_check.log) of one dry run."""
    root = tmp_path_factory.mktemp("gpu_check")
    env = cpu_env(GPU_CHECK_DRY_RUN="1", GPU_CHECK_FAULT_OOM_ABOVE_MICRO_BATCH="1",
                  OUT=str(root / "out"), TMPDIR=str(root))
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=500)
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


def test_the_environment_imports_what_training_imports(dry_run):
    env = dry_run[1]["parts"]["environment"]
    for module in ("pretrain.training.trainer", "deepspeed", "megatron.core"):
        assert env["imports"][module]["ok"] is True
    assert all(entry["ok"] for entry in env["imports"].values())
    assert env["stage"] == "done" and env["cuda_available"] is False


def test_the_environment_all_reduces_once_at_world_size_1_within_its_cap(dry_run):
    reduce = dry_run[1]["parts"]["environment"]["all_reduce"]
    assert reduce["ok"] is True and reduce["world_size"] == 1
    assert reduce["backend"] == "gloo"  # the dry run's CPU; NCCL on the GPU host
    assert reduce["s"] < 20


def test_every_imported_package_has_its_version_and_origin(dry_run):
    packages = dry_run[1]["parts"]["environment"]["packages"]
    assert packages["megatron-core"]["version"] == "0.16.1"
    assert packages["deepspeed"]["version"] == "0.19.8"
    assert packages["typing-extensions"]["version"] == metadata.version("typing_extensions")
    assert packages["torch"]["module"] == "torch"
    # No bundle in the dry run: everything is the host's, and this repo is the repo's.
    assert packages["lev-pretrain"]["origin"] == "repo"
    assert {p["origin"] for name, p in packages.items() if name != "lev-pretrain"} == {"host"}
    assert all(p["version"] for p in packages.values())


def test_the_summary_names_the_torch_that_ran_and_the_layer_spec(dry_run):
    summary = dry_run[1]
    assert summary["torch"]["version"] == metadata.version("torch")
    assert summary["torch"]["origin"] == "host" and summary["torch"]["cuda"] is None
    assert summary["layer_spec"] == "local" and summary["device"] == "CPU"
    for kind in ("lev", "tied"):
        part = summary["parts"][f"throughput_{kind}"]
        assert part["torch_version"] == metadata.version("torch")
        assert part["layer_spec"] == "local"


def test_throughput_of_lev_and_tied_is_measured_over_real_bf16_optimizer_steps(dry_run):
    for kind in ("lev", "tied"):
        part = dry_run[1]["parts"][f"throughput_{kind}"]
        assert part["embedding"] == kind and part["config"] == f"pretrain/configs/{kind}_1b2.yaml"
        assert part["timed_steps"] >= 1 and part["tokens_per_s"] > 0
        assert part["model_tflops_per_device"] > 0
        assert part["params"] > 0 and part["peak_host_rss_gib"] > 0
        assert part["backend"] == "gloo" and part["precision"] == "bf16"
        assert part["param_dtype"] == "torch.bfloat16" and part["optimizer"] == "DeepSpeedZeroOptimizer"  # the 1.2B configs are bf16 ZeRO-2


def test_an_out_of_memory_halves_the_micro_batch_and_keeps_the_global_batch(dry_run):
    for kind in ("lev", "tied"):
        part = dry_run[1]["parts"][f"throughput_{kind}"]
        assert part["config_micro_batch_size"] == 2 and part["micro_batch_size"] == 1
        assert part["global_batch_size"] == 4 and part["accumulation_steps"] == 4
        assert part["num_layers"] == 2  # the model measured is the config's
        assert part["micro_batch_reduced"] is True
        assert [a["micro_batch_size"] for a in part["attempts"]] == [2]
        assert "out of memory at micro-batch 2" in part["note"]
        assert "global batch 4 kept" in part["note"]


def test_mfu_against_the_datasheet_is_null_for_an_unknown_device_and_names_it(dry_run):
    part = dry_run[1]["parts"]["throughput_lev"]
    assert part["mfu"] is None and part["peak_tflops"] is None
    assert "'CPU'" in part["mfu_reason"]


def test_mfu_against_the_measured_matmul_ceiling_is_stated(dry_run):
    parts = dry_run[1]["parts"]
    matmul = parts["environment"]["matmul"]
    assert matmul["dtype"] == "bfloat16" and matmul["iterations"] >= 1 and matmul["tflops"] > 0
    for kind in ("lev", "tied"):
        part = parts[f"throughput_{kind}"]
        assert part["matmul_tflops"] == matmul["tflops"]
        assert part["mfu_vs_matmul"] == pytest.approx(part["model_tflops_per_device"]
                                                      / matmul["tflops"])


def test_lev_over_tied_states_its_spread_and_a_ratio_only_above_the_noise(dry_run):
    parts = dry_run[1]["parts"]
    part = parts["lev_vs_tied"]
    lev, tied = parts["throughput_lev"]["step_times_s"], parts["throughput_tied"]["step_times_s"]
    assert part["lev_step_times_s"] == lev and part["tied_step_times_s"] == tied
    lo, hi = part["per_step_ratio_range"]
    assert lo == pytest.approx(min(lev) / max(tied)) and hi == pytest.approx(max(lev) / min(tied))
    if lo <= 1.0 <= hi:
        assert part["step_time_ratio"] is None and "noise" in part["note"]
    else:
        assert part["step_time_ratio"] == pytest.approx((sum(lev) / len(lev))
                                                        / (sum(tied) / len(tied)))


def test_the_resumed_bf16_run_repeats_the_uninterrupted_losses_bit_for_bit(dry_run):
    part = dry_run[1]["parts"]["train_resume"]
    assert part["precision"] == "bf16"
    assert part["optimizer_states"] == ["bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"]
    assert part["resumed_steps"] == [5, 6, 7, 8]
    assert part["resumed_losses"] == part["straight_losses"]
    assert part["bitwise_equal"] is True and part["max_abs_diff"] == 0
    assert part["same_samples"] is True
    assert "repeat_of_straight_run" not in part  # only run when the losses differ


def test_the_small_run_trains_on_gloo_with_deterministic_kernels(dry_run):
    part = dry_run[1]["parts"]["train_resume"]
    assert part["backend"] == "gloo" and part["layer_spec"] == "local"
    assert part["determinism"]["torch.use_deterministic_algorithms"].startswith("True")
    assert part["determinism"]["env"]["LEV_ALLOW_CPU_BF16"] == "1"  # dry run only


def test_evaluation_scores_the_final_checkpoint(dry_run):
    part = dry_run[1]["parts"]["evaluate"]
    assert part["step"] == 8 and part["embedding"] == "lev" and part["tokens"] > 0
    assert part["ppl"] == pytest.approx(math.exp(part["loss"]))


def test_the_log_holds_every_parts_output(dry_run):
    log = dry_run[2]
    for part in EVERY_PART:
        assert f"== {part}:" in log
    assert '[environment] {"stage": "done"}' in log
    assert "[train_resume]" in log and "resumed from" in log
    assert "[evaluate]" in log and "eval.json" in log


def test_the_run_stays_within_its_time_budget(dry_run):
    summary = dry_run[1]
    assert summary["wall_s"] < summary["budget_s"] == 360
