"""What the GPU check states about throughput (scripts/gpu_check/peaks.py, throughput.py):
MFU per GPU model, LEV over tied only above the noise, the out-of-memory fallback."""

import pytest

from scripts.gpu_check.peaks import dense_bf16_peak, mfu_fields
from scripts.gpu_check.throughput import compare_step_times, smaller_micro_batch


@pytest.mark.parametrize(("device", "peak", "model"), [
    ("NVIDIA H100 80GB HBM3", 989.0, "H100 SXM"),  # what an H100 SXM reports
    ("NVIDIA H100 SXM5 80GB", 989.0, "H100 SXM"),
    ("NVIDIA H100 PCIe", 756.0, "H100 PCIe"),
    ("NVIDIA H100 NVL", 835.0, "H100 NVL"),
    ("NVIDIA H200", 989.0, "H200 SXM"),  # what an H200 reports
    ("NVIDIA H200 NVL", 835.0, "H200 NVL"),
])
def test_the_dense_bf16_peak_is_the_exact_models(device, peak, model):
    assert dense_bf16_peak(device) == (peak, model)


@pytest.mark.parametrize("device", ["NVIDIA A100-SXM4-80GB", "NVIDIA GH200 480GB", "NVIDIA H100",
                                    "CPU"])
def test_an_unknown_or_ambiguous_device_has_no_peak(device):
    assert dense_bf16_peak(device) == (None, None)


def test_mfu_is_stated_against_the_peak_and_the_measured_matmul():
    fields = mfu_fields(400.0, "NVIDIA H100 PCIe", "bf16", matmul_tflops=640.0)
    assert fields["mfu"] == pytest.approx(400 / 756) and fields["peak_model"] == "H100 PCIe"
    assert fields["mfu_vs_matmul"] == pytest.approx(400 / 640)


def test_mfu_of_an_unknown_device_is_null_and_names_the_device():
    fields = mfu_fields(400.0, "NVIDIA B200", "bf16", matmul_tflops=1500.0)
    assert fields["mfu"] is None and fields["peak_tflops"] is None
    assert "'NVIDIA B200'" in fields["mfu_reason"]
    assert fields["mfu_vs_matmul"] == pytest.approx(400 / 1500)  # the ceiling still applies


def test_mfu_is_not_stated_for_a_run_that_was_not_bf16():
    fields = mfu_fields(100.0, "NVIDIA H200", "fp32", matmul_tflops=None)
    assert fields["mfu"] is None and "fp32" in fields["mfu_reason"]
    assert fields["mfu_vs_matmul"] is None


def test_a_difference_below_the_step_to_step_noise_gets_no_ratio():
    # 0.2 % apart on average, while each one's steps vary by ~1 %.
    fields = compare_step_times([1.002, 0.992, 1.012], [0.995, 1.005, 1.000])
    assert fields["step_time_ratio"] is None
    assert "less than their step-to-step noise" in fields["note"]
    lo, hi = fields["per_step_ratio_range"]
    assert lo < 1.0 < hi


def test_a_difference_above_the_noise_gets_the_ratio_of_mean_step_times():
    fields = compare_step_times([1.10, 1.11, 1.12], [1.00, 1.01, 1.00])
    assert fields["step_time_ratio"] == pytest.approx(1.11 / (3.01 / 3))
    assert fields["per_step_ratio_range"] == pytest.approx([1.10 / 1.01, 1.12 / 1.00])
    assert "note" not in fields


def test_one_timed_step_is_too_few_to_state_a_ratio():
    fields = compare_step_times([1.5], [1.0, 1.0])
    assert fields["step_time_ratio"] is None and "too few" in fields["note"]


@pytest.mark.parametrize(("micro", "global_batch", "smaller"), [
    (16, 512, 8), (8, 512, 4), (2, 4, 1), (6, 36, 3), (12, 36, 6), (5, 10, 2), (3, 9, 1)])
def test_the_fallback_micro_batch_is_at_most_half_and_divides_the_global_batch(
        micro, global_batch, smaller):
    assert smaller_micro_batch(micro, global_batch) == smaller
