"""The ``env`` worker: what this host is, stage by stage, one JSON line per stage.

Imports exactly what training imports, runs a world-size-1 all-reduce (NCCL on CUDA, gloo
in the dry run) under its own 20 s cap, and times a bf16 matmul for the MFU ceiling. Each
stage prints its JSON line as soon as it is known, so a probe killed at its limit still
tells the orchestrator whether CUDA was there and how far it got.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .packages import imported_packages, origin_of
from .plan import ALL_REDUCE_TIMEOUT_S, MATMUL, REPO, TRAINING_IMPORTS

__all__ = ["EXIT_HUNG", "all_reduce_once", "bounded", "cmd_env", "matmul_ceiling", "reduce_stage"]

EXIT_HUNG = 4
"""The probe's exit code when the all-reduce hung (its thread cannot be joined)."""
# Imported too (the data, evaluation and export paths), after what training imports.
OTHER_IMPORTS = ["torch", "numpy", "yaml", "tokenizers", "webdataset", "wids", "zstandard",
                 "pydantic", "hjson", "typing_extensions", "matplotlib", "data_prep.shard",
                 "pretrain.evaluation.evaluate"]


def _say(**fields: Any) -> None:
    print(json.dumps(fields, default=str), flush=True)


def bounded(fn: Callable[[], dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    """``fn()`` in a daemon thread: its result, ``{"ok": False, "error": ...}`` if it
    raised, or ``{"ok": False, "hung": True, ...}`` if it had not returned in ``timeout_s``
    (a collective stuck in NCCL cannot be interrupted, only abandoned)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box.update(fn())
        except Exception as exc:  # reported, not raised: the probe goes on to the next stage
            box.update(ok=False, error=f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return {"ok": False, "hung": True, "error": f"no result within {timeout_s:g} s"}
    return box


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def all_reduce_once(cuda: bool) -> dict[str, Any]:
    """A world-size-1 process group (NCCL on CUDA, else gloo) and one all-reduce on it."""
    import torch
    import torch.distributed as dist

    backend = "nccl" if cuda else "gloo"
    began = time.monotonic()
    if cuda:
        torch.cuda.set_device(0)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1,
                            timeout=datetime.timedelta(seconds=ALL_REDUCE_TIMEOUT_S))
    try:
        x = torch.full((1024,), 3.0, device="cuda" if cuda else "cpu")
        dist.all_reduce(x)  # NCCL creates its communicator here, on the first collective
        if cuda:
            torch.cuda.synchronize()
        ok = bool((x == 3.0).all())
        return {"ok": ok, "backend": backend, "world_size": 1,
                "s": round(time.monotonic() - began, 2),
                **({} if ok else {"error": f"sum over one rank gave {x[0].item()}, not 3.0"})}
    finally:
        dist.destroy_process_group()


def matmul_ceiling(n: int, seconds: float, cuda: bool) -> dict[str, Any]:
    """TFLOP/s of repeated ``n x n x n`` bf16 matmuls for about ``seconds`` (after warm-up)."""
    import torch

    device = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=gen)
            for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):  # cuBLAS picks its kernel, the clocks come up
        torch.matmul(a, b, out=out)
    sync()
    batch, iters, began = 10 if cuda else 1, 0, time.perf_counter()
    while True:
        for _ in range(batch):
            torch.matmul(a, b, out=out)
        sync()
        iters += batch
        elapsed = time.perf_counter() - began
        if elapsed >= seconds:
            break
    return {"n": n, "dtype": "bfloat16", "iterations": iters, "s": round(elapsed, 3),
            "tflops": 2 * n**3 * iters / elapsed / 1e12}


def reduce_stage(reduce: Callable[[], dict[str, Any]], timeout_s: float) -> None:
    """Print ``reduce()``'s outcome within ``timeout_s``; after a hang, exit ``EXIT_HUNG``
    at once (the stuck thread, and NCCL's teardown, would block a normal exit)."""
    outcome = bounded(reduce, timeout_s)
    _say(stage="all_reduce", all_reduce=outcome)
    if outcome.get("hung"):
        sys.stdout.flush()
        os._exit(EXIT_HUNG)


def _torch_stage() -> bool:
    """Print which torch runs and whether it sees CUDA (first: a later hang keeps it)."""
    began = time.monotonic()
    import torch

    cuda = torch.cuda.is_available()
    site = os.environ.get("GPU_CHECK_SITE")
    _say(stage="torch", import_torch_s=round(time.monotonic() - began, 2),
         torch={"version": torch.__version__, "cuda": torch.version.cuda,
                "path": torch.__file__, "origin": origin_of(torch.__file__, site, REPO)},
         cuda_available=cuda)
    if cuda:
        try:
            props = torch.cuda.get_device_properties(0)
            _say(stage="device", gpu=props.name, gpu_count=torch.cuda.device_count(),
                 capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                 gpu_memory_gib=round(props.total_memory / 2**30, 1),
                 bf16_supported=torch.cuda.is_bf16_supported(),
                 nccl=".".join(map(str, torch.cuda.nccl.version())))
        except Exception as exc:
            _say(stage="device", device_error=f"{type(exc).__name__}: {exc}"[:500])
    return cuda


def _import_stage() -> None:
    imports: dict[str, dict[str, Any]] = {}
    for module in [*TRAINING_IMPORTS, *OTHER_IMPORTS]:
        began = time.monotonic()
        try:
            importlib.import_module(module)
            imports[module] = {"ok": True, "s": round(time.monotonic() - began, 2)}
        except BaseException as exc:  # SystemExit or a C-extension's error count as broken
            imports[module] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    _say(stage="imports", imports=imports)
    _say(stage="packages", packages=imported_packages(sys.modules,
                                                      os.environ.get("GPU_CHECK_SITE"), REPO))
    try:  # the spec training picks for the 1.2B configs (pretrain.training.model's rule)
        from pretrain.config import load_config
        from pretrain.training.model import layer_spec

        spec = layer_spec(load_config(REPO / "pretrain/configs/lev_1b2.yaml"))[1]
    except Exception as exc:
        spec = f"unknown ({type(exc).__name__}: {exc})"[:300]
    _say(stage="layer_spec", layer_spec=spec)


def cmd_env(dry_run: bool) -> int:
    """Print the environment as JSON lines; exit 0 (1: no torch; EXIT_HUNG: the
    all-reduce hung)."""
    _say(stage="python", python=platform.python_version(), executable=sys.executable,
         machine=platform.machine(), bundle_site=os.environ.get("GPU_CHECK_SITE"))
    try:
        cuda = _torch_stage()
    except Exception as exc:  # nothing below can run; the imports stage still says why
        _say(stage="torch", torch_error=f"{type(exc).__name__}: {exc}"[:500])
        _import_stage()
        return 1
    _import_stage()
    reduce_stage(lambda: all_reduce_once(cuda), ALL_REDUCE_TIMEOUT_S)
    # The dry run, or a host without CUDA: 8192^3 in bf16 would take minutes on a CPU.
    n, seconds = MATMUL["gpu" if cuda and not dry_run else "dry"]
    _say(stage="matmul", matmul=bounded(lambda: matmul_ceiling(n, seconds, cuda), 30))
    _say(stage="done")
    return 0
