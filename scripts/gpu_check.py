#!/usr/bin/env python3
"""One-shot check of the CUDA path (issue 15): bf16, NCCL, 1.2B throughput and MFU, LEV's
overhead over tied, exact resume and evaluation, in at most 6 minutes of wall time.

    bash scripts/gpu_bundle.sh                      # here (network): the wheels the GPU host lacks
    bash scripts/gpu_check.sh                       # there: installs them to a temp dir, then `run`
    GPU_CHECK_DRY_RUN=1 bash scripts/gpu_check.sh   # CPU, tiny shapes, fp32, gloo (the test suite)

Subcommands (``gpu_check.sh`` and ``run`` call them; every worker is its own process, so a
hang, a crash or an out-of-memory in one part is killed on time and leaves the others):

    run [--out DIR] [--work DIR]     every part below; writes OUT/gpu_check.json and .log
    bundle-check DIR                 can the GPU host install DIR? (exit 1 naming each problem)
    env                              Python, torch, CUDA, GPU, driver, NCCL, packages (JSON)
    throughput --config F --json P [--deadline T] [key=value ...]

Parts, each ``pass`` / ``fail`` / ``skipped`` with a reason in the JSON, in this order:
``install`` (done by the wrapper), ``environment``, ``throughput_lev``, ``throughput_tied``
(the 1.2B shapes, bf16, ZeRO-1, real optimizer steps through ``pretrain.training.trainer.build_engine``),
``lev_vs_tied``, ``data`` (corpus -> tokenizer -> shards with ``data_prep``), ``train_resume``
(``pretrain.train``: 8 steps saving at 4, then a copy of step 4 resumed to 8, losses
compared) and ``evaluate`` (``pretrain.evaluate`` on the 8-step checkpoint). A part's time
limit is its own cap, shrunk so that every later part keeps its minimum within the budget
(``GPU_CHECK_T0``, set by the wrapper, starts the clock before the install).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python scripts/gpu_check.py`: import pretrain

__all__ = ["bundle_problems", "main"]

BUDGET_S = 360.0
"""The whole check, install included (the issue's 6 minutes)."""

H200_PEAK_BF16_TFLOPS = 989.0
"""Dense bf16 tensor-core peak of one H200 SXM. Source: NVIDIA H200 Tensor Core GPU
datasheet (nvidia.com/en-us/data-center/h200/), "BFLOAT16 Tensor Core 1,979 TFLOPS" with
the footnote "with sparsity"; dense is half (989.5, quoted as 989 like the H100 SXM's)."""

PART_LIMITS_S = {  # part: (cap, minimum worth starting), seconds of wall time
    "environment": (40, 10), "throughput_lev": (110, 50), "throughput_tied": (110, 50),
    "data": (40, 10), "train_resume": (120, 45), "evaluate": (60, 20),
}
PARTS = ["install", "environment", "throughput_lev", "throughput_tied", "lev_vs_tied", "data",
         "train_resume", "evaluate"]
EXIT_OOM = 3  # `throughput` ran out of device memory (the orchestrator retries shallower)

# The dry run: the same steps at shapes two CPU cores run in seconds.
DRY_THROUGHPUT = ["model.num_layers=2", "model.hidden_size=32", "model.num_attention_heads=4",
                  "model.ffn_hidden_size=64", "model.vocab_size=384", "model.seq_length=32",
                  "lev.num_modes=16", "lev.seed_dim=4", "lev.grid_size=6",
                  "train.micro_batch_size=2", "train.global_batch_size=4",
                  "train.precision=fp32"]
# The small run through pretrain.train: tiny_lev.yaml's shape; the schedule does not depend
# on train_steps (decay_steps fixed), so 4 + 4 resumed steps must equal 8 straight ones.
SMALL_RUN = ["train.train_steps=8", "optimizer.decay_steps=8", "optimizer.warmup_steps=2",
             "train.log_interval=1", "train.eval_interval=0", "train.log_sample_ids=true",
             "train.zero_stage=1", "checkpoint.save_interval=4", "checkpoint.keep_last=3",
             "model.vocab_size=1024"]
DRY_SMALL_RUN = [o for o in DRY_THROUGHPUT if not o.startswith(("model.vocab", "train."))]
DRY_SMALL_RUN += ["train.micro_batch_size=2", "train.global_batch_size=8"]
TOKENIZER_VOCAB = 1024

# Set before pretrain.train runs (it has no switch of its own): deterministic kernels where
# torch has them (warn_only: an op without one logs a warning, which the part collects),
# and cuBLAS's fixed-workspace mode that determinism needs. Not filling fresh tensors with
# NaN (torch's default under deterministic mode, a debugging aid) keeps the steps as fast as
# without the flag: with it, a step of the dry run took 20x longer.
DETERMINISTIC_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONHASHSEED": "0"}
DETERMINISTIC_FLAGS = {"torch.use_deterministic_algorithms": "True, warn_only=True",
                       "torch.utils.deterministic.fill_uninitialized_memory": False,
                       "torch.backends.cudnn.deterministic": True,
                       "torch.backends.cudnn.benchmark": False}
DETERMINISTIC_MAIN = (
    "import runpy, torch; torch.use_deterministic_algorithms(True, warn_only=True); "
    "torch.utils.deterministic.fill_uninitialized_memory = False; "
    "torch.backends.cudnn.deterministic = True; torch.backends.cudnn.benchmark = False; "
    "runpy.run_module('pretrain.train', run_name='__main__', alter_sys=True)")

# ---------------------------------------------------------------------------- bundle-check
BUNDLE_LIMIT_BYTES = 64 * 2**20  # what travels with one device run
BUNDLE_REQUIRED = {"megatron-core", "deepspeed", "webdataset", "wids", "zstandard"}
HOST_PROVIDES = {  # on the GPU host already (KINDS.md's package list); not bundled
    "torch", "numpy", "packaging", "psutil", "py-cpuinfo", "msgpack", "ninja", "einops",
    "tqdm", "pyyaml", "typing-extensions", "nvidia-ml-py", "tokenizers", "pyarrow",
    "transformers", "safetensors", "mpi4py", "tensorboard", "matplotlib"}
TARGET_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3",
                  "sys_platform": "linux", "platform_system": "Linux",
                  "platform_machine": "x86_64", "os_name": "posix",
                  "implementation_name": "cpython", "platform_python_implementation": "CPython",
                  "extra": ""}


def _target_tags() -> set:
    """Wheel tags CPython 3.12 on manylinux x86_64 (glibc up to 2.39) installs."""
    from packaging import tags

    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(39, 16, -1)]
    platforms.append("manylinux2014_x86_64")
    return (set(tags.cpython_tags((3, 12), abis=["cp312", "abi3", "none"], platforms=platforms))
            | set(tags.compatible_tags((3, 12), "cp312", platforms)))


def _read_wheel(wheel: Path) -> tuple[list[str], list[str]]:
    """A wheel's ``Requires-Dist`` lines and its file names."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode("utf-8").splitlines()
    return [line.split(":", 1)[1].strip() for line in lines
            if line.startswith("Requires-Dist:")], names


def bundle_problems(bundle: Path) -> list[str]:
    """Why the GPU host could not install and run ``bundle`` (empty: it can)."""
    from packaging.requirements import Requirement
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    if not bundle.is_dir():
        return [f"{bundle} is not a directory: build it with bash scripts/gpu_bundle.sh (and "
                "name it in the device run's carry)"]
    problems = []
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    if size > BUNDLE_LIMIT_BYTES:
        problems.append(f"{bundle} holds {size / 2**20:.1f} MiB, over the "
                        f"{BUNDLE_LIMIT_BYTES >> 20} MiB a device run carries")
    target = _target_tags()
    found: dict[str, list[tuple[Path, Any]]] = {}
    for wheel in sorted(bundle.glob("*.whl")):
        try:
            name, version, _, wheel_tags = parse_wheel_filename(wheel.name)
        except InvalidWheelFilename:
            problems.append(f"{wheel.name} is not a wheel's file name")
            continue
        found.setdefault(name, []).append((wheel, version))
        if not wheel_tags & target:
            problems.append(f"{wheel.name} does not install on CPython 3.12 manylinux x86_64; "
                            "download it with --python-version 3.12 --platform manylinux...")
    for name, copies in found.items():
        if len(copies) > 1:
            problems.append(f"{len(copies)} versions of {name}: "
                            f"{', '.join(w.name for w, _ in copies)}; keep one (pip refuses both)")
    problems += [f"{name} is missing from {bundle}" for name in sorted(BUNDLE_REQUIRED - set(found))]
    for name, ((wheel, _), *_) in found.items():
        try:
            requires, files = _read_wheel(wheel)
        except (zipfile.BadZipFile, StopIteration, UnicodeDecodeError):
            problems.append(f"{wheel.name} is not a readable wheel (no .dist-info/METADATA)")
            continue
        compiled = [f for f in files if f.endswith(".so")]
        if name == "deepspeed" and compiled:
            problems.append(f"{wheel.name} has compiled ops ({compiled[0]}); build it with "
                            "DS_BUILD_OPS=0 and no torch in the build environment")
        for line in requires:
            req = Requirement(line)
            dep = canonicalize_name(req.name)
            if req.marker is not None and not req.marker.evaluate(TARGET_MARKERS):
                continue  # an extra, or another platform
            if dep in found:
                have = found[dep][0][1]
                if not req.specifier.contains(have, prereleases=True):
                    problems.append(f"{wheel.name} needs {line}; the bundle has {dep} {have}")
            elif dep not in HOST_PROVIDES:
                problems.append(f"{wheel.name} needs {req.name}, which is neither in the bundle "
                                "nor on the GPU host; add it to scripts/gpu_bundle.sh")
    return problems


def cmd_bundle_check(bundle: Path) -> int:
    problems = bundle_problems(bundle)
    for problem in problems:
        print(f"bundle-check: {problem}", file=sys.stderr)
    if not problems:
        size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
        print(f"bundle-check: {bundle} ok: {len(list(bundle.glob('*.whl')))} wheels, "
              f"{size / 2**20:.1f} MiB, CPython 3.12 manylinux x86_64")
    return 1 if problems else 0


# ------------------------------------------------------------------------------ workers
PROJECT_MODULES = ["torch", "numpy", "yaml", "tokenizers", "megatron.core", "deepspeed",
                   "webdataset", "wids", "zstandard", "pydantic", "hjson", "matplotlib"]
VERSIONED = ["torch", "megatron-core", "deepspeed", "webdataset", "wids", "zstandard",
             "pydantic", "numpy", "tokenizers", "transformers", "triton"]


def cmd_env() -> int:
    """Print the environment as one JSON line (the last line of output)."""
    import importlib.metadata
    import importlib.util
    import platform

    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(), "machine": platform.machine(),
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "versions": {}, "missing_modules": [],
        "transformer_engine": importlib.util.find_spec("transformer_engine") is not None}
    for dist in VERSIONED:
        try:
            info["versions"][dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info["versions"][dist] = None
    for module in PROJECT_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its parent package is missing
            found = False
        if not found:
            info["missing_modules"].append(module)
    info["deepspeed_from"] = str(getattr(importlib.util.find_spec("deepspeed"), "origin", None))
    # pretrain.training.model.layer_spec's rule: Transformer Engine on CUDA when it imports.
    info["expected_layer_spec"] = ("transformer-engine" if info["cuda_available"]
                                   and info["transformer_engine"] else "local")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                    capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                    gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    bf16_supported=torch.cuda.is_bf16_supported(),
                    nccl=".".join(map(str, torch.cuda.nccl.version())))
    smi = shutil.which("nvidia-smi")
    if smi:
        done = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30)
        info["nvidia_smi"] = done.stdout.strip() or done.stderr.strip()
    print(json.dumps(info))
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    """Time real optimizer steps of one config; write the result to ``args.json``."""
    from pretrain.config import load_config

    config = load_config(args.config, args.overrides)
    result: dict[str, Any] = {"config": args.config, "embedding": config.model.embedding,
                              "num_layers": config.model.num_layers}
    import torch

    code = 0
    try:
        limit = os.environ.get("GPU_CHECK_FAULT_OOM_ABOVE_LAYERS")  # tests the retry path
        if limit and config.model.num_layers > int(limit):
            raise torch.OutOfMemoryError(f"fault injection: {config.model.num_layers} layers "
                                         f"> GPU_CHECK_FAULT_OOM_ABOVE_LAYERS={limit}")
        result.update(_measure(config, args))
    except RuntimeError as exc:  # torch.OutOfMemoryError, or cuBLAS failing to allocate
        text = str(exc)
        if not (isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower()
                or "ALLOC_FAILED" in text):
            raise
        result.update(oom=True, error=text.splitlines()[0])
        code = EXIT_OOM
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return code


def _measure(config, args: argparse.Namespace) -> dict[str, Any]:
    """The timing itself: what benchmarks/train_throughput.py does, plus memory and a budget."""
    import resource

    import numpy as np
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_throughput import zipf_batch

    from pretrain.runtime.distributed import destroy_distributed, init_distributed
    from pretrain.runtime.metrics import model_flops_per_token
    from pretrain.training.model import build_model, count_parameters, layer_spec
    from pretrain.training.trainer import build_engine

    start = time.monotonic()
    cuda = torch.cuda.is_available()
    init_distributed(config.parallel.tensor_parallel, config.train.seed)
    try:
        dp = ps.get_data_parallel_world_size()
        counts = count_parameters(build_model(config, meta=True), config.parallel.tensor_parallel)
        engine, _ = build_engine(config, dp)
        build_s = time.monotonic() - start
        t, m = config.train, config.model
        accum = t.global_batch_size // (t.micro_batch_size * dp)
        rng = np.random.default_rng(ps.get_data_parallel_rank())
        positions = torch.arange(m.seq_length, device=engine.device).expand(t.micro_batch_size, -1)

        def step() -> float:
            began = time.perf_counter()
            for _ in range(accum):
                block = zipf_batch(t.micro_batch_size, m.seq_length, m.vocab_size, rng)
                block = block.to(engine.device)
                loss = engine(block[:, :-1], positions, None, labels=block[:, 1:]).float().mean()
                engine.backward(loss)
                engine.step()  # DeepSpeed steps the optimizer at the accumulation boundary
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - began

        warmup = [step() for _ in range(args.warmup)]
        times: list[float] = []
        while len(times) < args.steps:
            if times and args.deadline - time.time() < 1.5 * max(times):
                break  # the next step might not fit: report what was timed
            times.append(step())
        elapsed = sum(times)
        world = dist.get_world_size()
        tokens_per_s = len(times) * t.global_batch_size * m.seq_length / elapsed
        flops_per_token = model_flops_per_token(config)
        tflops = tokens_per_s * flops_per_token / world / 1e12
        out: dict[str, Any] = {
            "layer_spec": layer_spec(config)[1], "precision": t.precision,
            "param_dtype": str(next(engine.module.parameters()).dtype),
            "zero_stage": t.zero_stage, "params": counts.total,
            "micro_batch_size": t.micro_batch_size, "global_batch_size": t.global_batch_size,
            "seq_length": m.seq_length, "accumulation_steps": accum, "world_size": world,
            "device": torch.cuda.get_device_name() if cuda else "CPU",
            "backend": dist.get_backend(), "build_s": round(build_s, 2),
            "warmup_step_s": [round(s, 4) for s in warmup],
            "step_times_s": [round(s, 4) for s in times], "timed_steps": len(times),
            "step_time_s": elapsed / len(times), "tokens_per_s": tokens_per_s,
            "model_flops_per_token": flops_per_token, "model_tflops_per_device": tflops,
            "peak_host_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        if cuda:
            out.update(peak_memory_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
                       peak_memory_reserved_gib=torch.cuda.max_memory_reserved() / 2**30,
                       device_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30)
        if cuda and "H200" in out["device"] and t.precision == "bf16":
            out.update(peak_tflops=H200_PEAK_BF16_TFLOPS, mfu=tflops / H200_PEAK_BF16_TFLOPS)
        else:
            out.update(peak_tflops=None, mfu=None,
                       mfu_reason=f"no dense bf16 peak known here ({out['device']}, "
                                  f"{t.precision}); MFU is stated for an H200 in bf16 only")
        return out
    finally:
        destroy_distributed()


# --------------------------------------------------------------------------- orchestrator
class PartFailed(Exception):
    """A part cannot go on; the message is its reason."""


class Check:
    """The parts in order under one deadline; the JSON is rewritten as each part ends."""

    def __init__(self, out: Path, work: Path, dry_run: bool) -> None:
        self.out, self.work, self.dry_run = out, work, dry_run
        self.t0 = float(os.environ.get("GPU_CHECK_T0") or time.time())
        self.deadline = self.t0 + BUDGET_S - 5  # the last seconds write the summary
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        self._log = (out / "gpu_check.log").open("a", buffering=1)
        self._lock = threading.Lock()
        self.seq_length = 32 if dry_run else 128  # the small run's: tiny_lev.yaml's on GPU
        self.parts: dict[str, dict[str, Any]] = {}
        self.summary: dict[str, Any] = {"dry_run": dry_run, "budget_s": BUDGET_S,
                                        "work_dir": str(work), "parts": self.parts}

    # ---------------------------------------------------------------- plumbing
    def say(self, line: str) -> None:
        with self._lock:
            print(line, flush=True)
            self._log.write(line + "\n")

    def allowance(self, part: str, started: float) -> float:
        """Seconds ``part`` may still use: its cap, less what every later part needs."""
        later = [p for p in PARTS[PARTS.index(part) + 1:] if p in PART_LIMITS_S]
        reserve = sum(PART_LIMITS_S[p][1] for p in later)
        return min(PART_LIMITS_S[part][0] - (time.time() - started),
                   self.deadline - time.time() - reserve)

    def record(self, part: str, status: str, **fields: Any) -> None:
        self.parts[part] = {"status": status, **fields}
        self.write_summary()
        reason = f": {fields['reason']}" if "reason" in fields else ""
        self.say(f"== {part}: {status}{reason}")

    def write_summary(self) -> None:
        """(Re)write the JSON: a run killed from outside still leaves the parts done so far."""
        self.summary["wall_s"] = round(time.time() - self.t0, 1)
        self.summary["ok"] = self._ok()
        (self.out / "gpu_check.json").write_text(json.dumps(self.summary, indent=1) + "\n")

    def _ok(self) -> bool:
        """Every part passed (the dry run's install is skipped by design)."""
        return len(self.parts) == len(PARTS) and all(
            entry["status"] == "pass" or (part == "install" and self.dry_run)
            for part, entry in self.parts.items())

    def run_part(self, part: str, body) -> None:
        """Run ``body(limit)`` (``limit()``: seconds left to the part) and record it."""
        started = time.time()
        if (left := self.allowance(part, started)) < PART_LIMITS_S[part][1]:
            self.record(part, "skipped", reason=(
                f"out of time: {max(left, 0):.0f} s left for it within the {BUDGET_S:.0f} s "
                f"budget after the later parts' minimums; it needs {PART_LIMITS_S[part][1]} s"))
            return
        self.say(f"== {part} (up to {left:.0f} s)")
        try:
            status, fields = body(lambda: self.allowance(part, started))
        except PartFailed as exc:
            status, fields = "fail", {"reason": str(exc)}
        except Exception as exc:  # a bug here must not stop the other parts
            status, fields = "fail", {"reason": f"{type(exc).__name__}: {exc}",
                                      "traceback": traceback.format_exc()[-3000:]}
        self.record(part, status, **fields, wall_s=round(time.time() - started, 1))

    def command(self, part: str, argv: list, limit: float,
                env: dict[str, str] | None = None) -> tuple[int | None, str]:
        """Run ``argv`` in the repo, its output streamed into the log; ``None`` if killed
        at ``limit`` seconds (its whole process group)."""
        if limit < 5:
            raise PartFailed(f"out of time before: {shlex.join(map(str, argv))}")
        child_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        if self.dry_run:
            child_env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU path, GPU or not
        self.say(f"[{part}] $ {shlex.join(map(str, argv))}   (limit {limit:.0f} s)")
        proc = subprocess.Popen([str(a) for a in argv], cwd=REPO, env=child_env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                errors="replace", start_new_session=True)
        lines: list[str] = []

        def pump() -> None:
            for line in proc.stdout:
                lines.append(line)
                self.say(f"[{part}] {line.rstrip()}")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            code = None
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: it and what it started
            proc.wait()
            self.say(f"[{part}] killed at its limit of {limit:.0f} s")
        reader.join(timeout=10)
        return code, "".join(lines)

    def python(self, part: str, args: list, limit: float, **kw) -> str:
        """``command`` of ``python ARGS`` that must exit 0; returns its output."""
        code, output = self.command(part, [sys.executable, *args], limit, **kw)
        if code != 0:
            what = "killed at its time limit" if code is None else f"exited {code}"
            name = ("pretrain.train (deterministic flags)" if args[0] == "-c" else
                    " ".join(Path(str(a)).name for a in args[:2]))
            last = (output.strip().splitlines() or ["no output"])[-1]
            raise PartFailed(f"{name} {what}; its last line: {last}")
        return output

    # ---------------------------------------------------------------- parts
    def part_environment(self, limit) -> tuple[str, dict]:
        info = _last_json(self.python("environment", [__file__, "env"], limit()))
        problems = []
        if info["missing_modules"]:
            problems.append(f"not importable: {', '.join(info['missing_modules'])}")
        if not self.dry_run and not info["cuda_available"]:
            problems.append("torch sees no CUDA device")
        if not self.dry_run and info["cuda_available"] and not info.get("bf16_supported"):
            problems.append("the GPU has no bf16")
        return ("fail", {"reason": "; ".join(problems), **info}) if problems else ("pass", info)

    def part_throughput(self, kind: str, limit) -> tuple[str, dict]:
        from pretrain.config import load_config

        part, config = f"throughput_{kind}", f"pretrain/configs/{kind}_1b2.yaml"
        overrides = DRY_THROUGHPUT if self.dry_run else []
        layers = configured = load_config(REPO / config, overrides).model.num_layers
        attempts: list[dict[str, Any]] = []
        while True:
            path = self.work / f"{part}_{layers}layers.json"
            code, _ = self.command(part, [
                sys.executable, __file__, "throughput", "--config", config, "--json", path,
                "--deadline", f"{time.time() + limit() - 10:.0f}", *overrides,
                f"model.num_layers={layers}"], limit())
            result = json.loads(path.read_text()) if path.is_file() else {}
            if code != EXIT_OOM or layers == 1:
                break
            attempts.append({"num_layers": layers, "outcome": result.get("error")})
            layers = max(1, layers // 2)  # memory forces it: fewer layers, said in the JSON
        fields = {**result, "config_num_layers": configured,
                  "layers_reduced": layers != configured, "attempts": attempts}
        if layers != configured:
            fields["note"] = (f"measured with {layers} of the config's {configured} layers: "
                              f"out of memory at {', '.join(str(a['num_layers']) for a in attempts)}")
        if code == 0 and result.get("tokens_per_s", 0) > 0:
            return "pass", fields
        reason = ("killed at its time limit" if code is None else
                  f"out of memory down to {layers} layer(s)" if code == EXIT_OOM else
                  f"the worker exited {code}; see the log")
        return "fail", {"reason": reason, **fields}

    def lev_vs_tied(self) -> None:
        lev, tied = self.parts.get("throughput_lev", {}), self.parts.get("throughput_tied", {})
        if lev.get("status") != "pass" or tied.get("status") != "pass":
            self.record("lev_vs_tied", "skipped", reason="needs both throughput parts to pass")
        elif lev["num_layers"] != tied["num_layers"]:
            self.record("lev_vs_tied", "skipped", reason=(
                f"measured at different depths (lev {lev['num_layers']}, tied "
                f"{tied['num_layers']} layers)"))
        else:
            self.record("lev_vs_tied", "pass", num_layers=lev["num_layers"],
                        step_time_ratio=lev["step_time_s"] / tied["step_time_s"],
                        flops_per_token_ratio=(lev["model_flops_per_token"]
                                               / tied["model_flops_per_token"]),
                        param_ratio=lev["params"] / tied["params"])

    def part_data(self, limit) -> tuple[str, dict]:
        corpus, tokenizer, shards = (self.work / n for n in ("corpus", "tokenizer.json", "shards"))
        for path in (corpus, shards):
            shutil.rmtree(path, ignore_errors=True)
        documents, chars = _write_corpus(corpus / "stdlib.jsonl")
        self.python("data", ["data_prep/train_tokenizer.py", "--input", corpus, "--output",
                             tokenizer, "--vocab-size", TOKENIZER_VOCAB, "--val-fraction",
                             "0.05"], limit())
        self.python("data", ["data_prep/shard.py", "--input", corpus, "--tokenizer", tokenizer,
                             "--output", shards, "--seq-length", self.seq_length, "--val-fraction",
                             "0.05", "--shard-size-mb", "1", "--no-progress"], limit())
        manifest = json.loads((shards / "manifest.json").read_text())
        return "pass", {"documents": documents, "characters": chars, "shards": str(shards),
                        "seq_length": self.seq_length,
                        "samples": {k: v["samples"] for k, v in manifest["splits"].items()}}

    def part_train_resume(self, limit) -> tuple[str, dict]:
        shards, runs = self.work / "shards", self.work / "runs"
        shutil.rmtree(runs, ignore_errors=True)
        precision = "fp32" if self.dry_run else "bf16"
        base = ["-c", DETERMINISTIC_MAIN, "--config", "pretrain/configs/tiny_lev.yaml",
                *SMALL_RUN, *(DRY_SMALL_RUN if self.dry_run else []), f"data.path={shards}",
                f"train.precision={precision}"]

        def train(save_dir: Path) -> str:
            return self.python("train_resume", [*base, f"checkpoint.save_dir={save_dir}"],
                               limit(), env=DETERMINISTIC_ENV)

        log = train(runs / "straight")
        tag = runs / "straight" / "step00000004"
        if not (tag / "meta.json").is_file():
            raise PartFailed(f"the 8-step run left no complete checkpoint at {tag}")
        shutil.copytree(tag, runs / "resumed" / tag.name)  # as if it had stopped there
        (runs / "resumed" / "latest").write_text(tag.name + "\n")
        resumed_log = train(runs / "resumed")
        if f"resumed from {runs / 'resumed' / tag.name}" not in resumed_log:
            raise PartFailed("the second run did not say 'resumed from ...step00000004'")
        straight, resumed = _train_records(runs / "straight"), _train_records(runs / "resumed")
        steps = list(range(5, 9))
        fields = _compare(straight, resumed, steps, ("straight", "resumed"))
        fields.update(
            precision=precision, backend=_find(r"backend (\w+)", log),
            layer_spec=_find(r"layer spec: (\S+)", log), resumed_steps=steps,
            command=f"python -c <deterministic flags; runpy pretrain.train> {shlex.join(base[2:])}",
            determinism={"env": DETERMINISTIC_ENV, **DETERMINISTIC_FLAGS,
                         "ops_without_deterministic_kernel": sorted(set(re.findall(
                             r"(\S+) does not have a deterministic implementation",
                             log + resumed_log)))})
        expected = "gloo" if self.dry_run else "nccl"
        if fields["backend"] != expected:
            return "fail", {"reason": f"trained on backend {fields['backend']}, not {expected}",
                            **fields}
        if fields["bitwise_equal"] or not fields["same_samples"]:
            return _resume_verdict(fields)
        if limit() > 30:  # not bitwise: is it the resume, or do the kernels differ run to run?
            self.python("train_resume", [*base, f"checkpoint.save_dir={runs / 'repeat'}"],
                        limit(), env=DETERMINISTIC_ENV)
            repeat = _compare(straight, _train_records(runs / "repeat"), list(range(1, 9)),
                              ("straight", "repeat"))
            fields["repeat_of_straight_run"] = repeat
        return _resume_verdict(fields)

    def part_evaluate(self, limit) -> tuple[str, dict]:
        output = self.work / "eval"
        self.python("evaluate", ["-m", "pretrain.evaluate", "--checkpoint",
                                 self.work / "runs" / "straight", "--data-path",
                                 self.work / "shards", "--output", output], limit())
        run = json.loads((output / "eval.json").read_text())["runs"][0]
        fields = {k: run.get(k) for k in ("checkpoint", "step", "embedding", "loss", "ppl",
                                          "tokens", "params")}
        if run.get("loss") is None or not math.isfinite(run["loss"]) or not run.get("tokens"):
            return "fail", {"reason": "no finite loss over a non-empty validation split",
                            **fields}
        return "pass", fields

    # ---------------------------------------------------------------- the run
    def run(self) -> int:
        install = os.environ.get("GPU_CHECK_INSTALL", "skipped: not run through "
                                 "scripts/gpu_check.sh; this Python's own packages")
        status, _, detail = install.partition(": ")
        self.say(f"gpu_check: {'dry run (CPU, tiny shapes, fp32, gloo)' if self.dry_run else 'GPU'}"
                 f", budget {BUDGET_S:.0f} s from the wrapper's start, work dir {self.work}")
        self.record("install", status, **{"detail" if status == "pass" else "reason": detail})
        self.run_part("environment", self.part_environment)
        env = self.parts["environment"]
        no_gpu = not self.dry_run and not env.get("cuda_available", False)
        no_gpu_reason = f"no CUDA device confirmed (environment: {env['status']})"
        for kind in ("lev", "tied"):
            if no_gpu:
                self.record(f"throughput_{kind}", "skipped", reason=no_gpu_reason)
            else:
                self.run_part(f"throughput_{kind}",
                              lambda limit, kind=kind: self.part_throughput(kind, limit))
        self.lev_vs_tied()
        self.run_part("data", self.part_data)
        for part in ("train_resume", "evaluate"):
            if no_gpu:
                self.record(part, "skipped", reason=no_gpu_reason)
            elif part == "train_resume" and self.parts["data"]["status"] != "pass":
                self.record(part, "skipped", reason="needs the data part's shards")
            elif part == "evaluate" and not (self.work / "runs/straight/latest").is_file():
                self.record(part, "skipped", reason="needs a checkpoint from train_resume")
            else:
                self.run_part(part, getattr(self, f"part_{part}"))
        self.summary["finished"] = True
        self.write_summary()
        self.say(_table(self.parts))
        self.say(f"summary: {self.out / 'gpu_check.json'}; log: {self.out / 'gpu_check.log'}; "
                 f"{'every part passed' if self.summary['ok'] else 'NOT every part passed'} "
                 f"in {self.summary['wall_s']:.0f} s")
        return 0 if self.summary["ok"] else 1


def _last_json(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise PartFailed("the worker printed no JSON line")


def _find(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def _write_corpus(path: Path, max_chars: int = 600_000) -> tuple[int, int]:
    """A jsonl corpus of this Python's standard-library sources, paragraph per document
    (the tests' shard fixture does the same): real text, on every host, offline."""
    docs, chars = [], 0
    for source in sorted(Path(os.__file__).parent.glob("*.py")):
        for para in source.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            if len(para.strip()) > 40:
                docs.append(para.strip())
                chars += len(docs[-1])
        if chars >= max_chars:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return len(docs), chars


def _train_records(save_dir: Path) -> dict[int, dict[str, Any]]:
    """metrics.jsonl's training records by step."""
    lines = (save_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if "loss" in r}


def _compare(a: dict[int, dict], b: dict[int, dict], steps: list[int],
             names: tuple[str, str]) -> dict[str, Any]:
    """Losses of runs ``a`` and ``b`` at ``steps`` (JSON floats round-trip exactly)."""
    missing = [s for s in steps if s not in a or s not in b]
    if missing:
        raise PartFailed(f"no training record for steps {missing}")
    bad = [s for s in steps if a[s]["loss"] is None or b[s]["loss"] is None]
    if bad:  # metrics.jsonl writes a non-finite loss as null
        raise PartFailed(f"non-finite loss at steps {bad}")
    diffs = [abs(a[s]["loss"] - b[s]["loss"]) for s in steps]
    return {f"{names[0]}_losses": [a[s]["loss"] for s in steps],
            f"{names[1]}_losses": [b[s]["loss"] for s in steps],
            "bitwise_equal": all(a[s]["loss"] == b[s]["loss"] for s in steps),
            "max_abs_diff": max(diffs),
            "max_rel_diff": max(d / abs(a[s]["loss"]) for d, s in zip(diffs, steps, strict=True)),
            "same_samples": all(a[s].get("sample_ids") == b[s].get("sample_ids") for s in steps)}


def _resume_verdict(fields: dict[str, Any]) -> tuple[str, dict]:
    """Pass: bit for bit; or, where repeating the uninterrupted run differs as well (kernels
    without a deterministic implementation), within 1 % relative."""
    if not fields["same_samples"]:
        return "fail", {"reason": "the resumed run read other samples", **fields}
    if fields["bitwise_equal"]:
        return "pass", fields
    repeat = fields.get("repeat_of_straight_run")
    if repeat is None:
        return "fail", {"reason": "resumed losses differ and no time was left to tell kernel "
                                  "nondeterminism from a resume error", **fields}
    if repeat["bitwise_equal"]:
        return "fail", {"reason": "resumed losses differ though a repeat of the straight run is "
                                  "bitwise equal: resume is not exact", **fields}
    if fields["max_rel_diff"] <= 0.01:
        return "pass", {"note": "not bitwise: a repeat of the straight run differs too "
                                "(nondeterministic kernels); within 1 % relative", **fields}
    return "fail", {"reason": f"resumed losses differ by {fields['max_rel_diff']:.2%} relative",
                    **fields}


def _table(parts: dict[str, dict[str, Any]]) -> str:
    """The closing summary, one line per part."""
    def brief(part: str, e: dict[str, Any]) -> str:
        if e["status"] != "pass":
            return e.get("reason", "")
        if part.startswith("throughput"):
            mem = e.get("peak_memory_allocated_gib")
            return (f"{e['tokens_per_s']:,.0f} tok/s, {e['model_tflops_per_device']:.2f} TFLOP/s"
                    + (f", MFU {100 * e['mfu']:.1f} %" if e.get("mfu") is not None else "")
                    + (f", peak {mem:.1f} GiB" if mem is not None else "")
                    + f", {e['num_layers']} layers, {e['timed_steps']} timed steps")
        if part == "lev_vs_tied":
            return f"step time lev/tied {e['step_time_ratio']:.3f}"
        if part == "train_resume":
            return (f"{e['backend']}, {e['precision']}, bitwise equal: {e['bitwise_equal']}, "
                    f"max |diff| {e['max_abs_diff']:.3g}")
        if part == "evaluate":
            return f"step {e['step']}: loss {e['loss']:.4f} ppl {e['ppl']:.2f} ({e['tokens']} tokens)"
        if part == "environment":
            return (f"{e.get('gpu', 'CPU')} (nvidia-smi: {e.get('nvidia_smi', '-')}), torch "
                    f"{e['versions']['torch']}, CUDA {e['torch_cuda']}, NCCL {e.get('nccl', '-')}"
                    f", layer spec {e['expected_layer_spec']}")
        return ""
    return "\n".join(f"{part:<16} {e['status']:<8} {brief(part, e)}" for part, e in parts.items())


# ---------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="every part; the default")
    run.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out",
                     help="where gpu_check.json and gpu_check.log go (default: $OUT, else "
                          "gpu_check_out)")
    run.add_argument("--work", default=None,
                     help="scratch for data, checkpoints, results (default: a new temp dir)")
    check = sub.add_parser("bundle-check", help="can the GPU host install this wheel folder?")
    check.add_argument("bundle", type=Path, help="the folder gpu_bundle.sh built")
    sub.add_parser("env", help="the environment as one JSON line")
    thr = sub.add_parser("throughput", help="time one config's optimizer steps")
    thr.add_argument("--config", required=True, help="YAML config (pretrain/configs/*.yaml)")
    thr.add_argument("--json", required=True, help="where to write the result")
    thr.add_argument("--deadline", type=float, default=float("inf"),
                     help="epoch seconds: time no step that would end after it")
    thr.add_argument("--steps", type=int, default=3, help="timed steps at most")
    thr.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    thr.add_argument("overrides", nargs="*", help="section.field=value overrides")
    args = parser.parse_args(argv)
    if args.command == "bundle-check":
        return cmd_bundle_check(args.bundle)
    if args.command == "env":
        return cmd_env()
    if args.command == "throughput":
        return cmd_throughput(args)
    dry_run = os.environ.get("GPU_CHECK_DRY_RUN") == "1"
    out = Path(getattr(args, "out", None) or os.environ.get("OUT") or "gpu_check_out")
    work = getattr(args, "work", None) or tempfile.mkdtemp(prefix="lev-gpu-check-")
    return Check(out, Path(work), dry_run).run()


if __name__ == "__main__":
    sys.exit(main())
