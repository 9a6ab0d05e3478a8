"""MFU: model FLOPs per second over what the device can do, two ways.

Against the datasheet's dense bf16 tensor-core peak of the exact model (an H100 PCIe is
not an H100 SXM), and against a measured ceiling, an 8192^3 bf16 matmul timed on the
device itself (what a large, perfectly shaped GEMM reaches there: clocks, power cap).
"""

from __future__ import annotations

from typing import Any

from pretrain.runtime.peaks import DENSE_BF16_PEAK_TFLOPS, dense_bf16_peak

__all__ = ["DENSE_BF16_PEAK_TFLOPS", "dense_bf16_peak", "mfu_fields"]


def mfu_fields(tflops: float, device: str, precision: str,
               matmul_tflops: float | None) -> dict[str, Any]:
    """MFU of ``tflops`` (model TFLOP/s per device) against the peak and the matmul ceiling.

    ``mfu`` is None, with ``mfu_reason`` naming the device, when no datasheet peak is
    known for it or the run was not bf16; ``mfu_vs_matmul`` is None when no ceiling was
    measured.
    """
    peak, model = dense_bf16_peak(device)
    fields: dict[str, Any] = {"peak_tflops": peak, "peak_model": model,
                              "matmul_tflops": matmul_tflops}
    if precision != "bf16":
        fields.update(mfu=None, mfu_reason=f"trained in {precision}; the peaks are bf16")
    elif peak is None:
        known = ", ".join(DENSE_BF16_PEAK_TFLOPS)
        fields.update(mfu=None, mfu_reason=f"no dense bf16 peak known for {device!r} "
                                           f"(known: {known})")
    else:
        fields["mfu"] = tflops / peak
    fields["mfu_vs_matmul"] = tflops / matmul_tflops if matmul_tflops else None
    return fields
