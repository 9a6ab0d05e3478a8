"""Dense bf16 tensor-core peaks of the exact GPU model, for MFU (one table for the GPU
check and the benchmarks): an H100 PCIe is not an H100 SXM."""

from __future__ import annotations

__all__ = ["DENSE_BF16_PEAK_TFLOPS", "dense_bf16_peak"]

DENSE_BF16_PEAK_TFLOPS = {
    # NVIDIA's datasheets (nvidia.com/en-us/data-center/h100/, .../h200/) give "BFLOAT16
    # Tensor Core" with the footnote "with sparsity"; dense is half: H100 SXM 1,979 -> 989,
    # H100 PCIe 1,513 -> 756, H100 NVL 1,671 -> 835, H200 SXM 1,979 -> 989, H200 NVL
    # 1,671 -> 835.
    "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0,
    "H200 SXM": 989.0, "H200 NVL": 835.0,
}


def dense_bf16_peak(device: str) -> tuple[float | None, str | None]:
    """``(peak TFLOP/s, model)`` for ``torch.cuda.get_device_name()``, or ``(None, None)``.

    The names torch reports: "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe",
    "NVIDIA H100 NVL", "NVIDIA H200" (SXM), "NVIDIA H200 NVL". A bare "H100" without a
    form factor is not guessed: PCIe, NVL and SXM differ by up to 30 %.
    """
    name = device.upper()
    for chip in ("H100", "H200"):
        if chip not in name or f"G{chip}" in name:  # GH200 is another product
            continue
        if "NVL" in name:
            model = f"{chip} NVL"
        elif "PCIE" in name:
            model = f"{chip} PCIe"
        elif "SXM" in name or "HBM3" in name or (chip == "H200" and name.rstrip().endswith("H200")):
            model = f"{chip} SXM"
        else:
            return None, None
        if model in DENSE_BF16_PEAK_TFLOPS:
            return DENSE_BF16_PEAK_TFLOPS[model], model
    return None, None
