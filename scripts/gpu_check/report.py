"""The closing table: one line per part, the numbers a reader looks for first."""

from __future__ import annotations

from typing import Any

__all__ = ["table"]


def _environment(e: dict[str, Any]) -> str:
    torch = e.get("torch", {})
    reduce, matmul = e.get("all_reduce") or {}, e.get("matmul") or {}
    return (f"{e.get('gpu', 'CPU')} (nvidia-smi: {e.get('nvidia_smi', '-')}), torch "
            f"{torch.get('version')} ({torch.get('origin')}), CUDA {torch.get('cuda')}, NCCL "
            f"{e.get('nccl', '-')}, all-reduce {reduce.get('backend')} {reduce.get('s')} s, "
            f"bf16 matmul {matmul.get('tflops', 0):.1f} TFLOP/s, layer spec {e.get('layer_spec')}")


def _throughput(e: dict[str, Any]) -> str:
    mem = e.get("peak_memory_allocated_gib")
    mfu = (f"MFU {100 * e['mfu']:.1f} % of {e['peak_model']}" if e.get("mfu") is not None
           else "MFU n/a")
    vs_matmul = e.get("mfu_vs_matmul")
    return (f"{e['tokens_per_s']:,.0f} tok/s, {e['model_tflops_per_device']:.2f} TFLOP/s, {mfu}"
            + (f", {100 * vs_matmul:.1f} % of the matmul ceiling" if vs_matmul else "")
            + (f", peak {mem:.1f} GiB" if mem is not None else "")
            + f", micro-batch {e['micro_batch_size']}, {e['timed_steps']} timed steps")


def _brief(part: str, e: dict[str, Any]) -> str:
    if e["status"] != "pass":
        return e.get("reason", "")
    if part == "environment":
        return _environment(e)
    if part.startswith("throughput"):
        return _throughput(e)
    if part == "lev_vs_tied":
        lo, hi = e["per_step_ratio_range"]
        if e["step_time_ratio"] is None:
            return e["note"]
        return f"step time lev/tied {e['step_time_ratio']:.3f} (per-step {lo:.3f} to {hi:.3f})"
    if part == "train_resume":
        return (f"{e['backend']}, {e['precision']}, bitwise equal: {e['bitwise_equal']}, "
                f"max |diff| {e['max_abs_diff']:.3g}")
    if part == "evaluate":
        return f"step {e['step']}: loss {e['loss']:.4f} ppl {e['ppl']:.2f} ({e['tokens']} tokens)"
    return e.get("detail", "")


def table(parts: dict[str, dict[str, Any]]) -> str:
    """The closing summary, one line per part."""
    return "\n".join(f"{part:<16} {e['status']:<8} {_brief(part, e)}" for part, e in parts.items())
