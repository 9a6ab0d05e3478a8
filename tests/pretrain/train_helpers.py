"""Helpers for tests that run `python -m pretrain.train` on the tiny shard fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import rank_logs, spawn_ranks, wait_ranks

# A model small enough for 2 CPU ranks; vocab 384 = the fixture tokenizer's (TP-divisible).
TINY_MODEL = [
    "model.num_layers=2", "model.hidden_size=32", "model.num_attention_heads=4",
    "model.ffn_hidden_size=64", "model.vocab_size=384", "model.seq_length=32",
    "lev.num_modes=16", "lev.seed_dim=4", "lev.grid_size=6",
    "train.micro_batch_size=2", "train.global_batch_size=8", "train.precision=fp32",
    "train.log_interval=1", "train.eval_interval=0", "train.log_sample_ids=true",
    # The schedule must not depend on train_steps, so 4 + 4 steps equal 8 steps.
    "optimizer.warmup_steps=2", "optimizer.decay_steps=8", "optimizer.lr=3e-3",
    "optimizer.min_lr=3e-4",
]


def train_argv(save_dir: Path, data: Path, *overrides: str) -> list[str]:
    """``python`` arguments of a tiny pretrain.train run on ``data`` saving to ``save_dir``."""
    return ["-m", "pretrain.train", "--config", "pretrain/configs/tiny_lev.yaml", *TINY_MODEL,
            f"data.path={data}", f"checkpoint.save_dir={save_dir}", *overrides]


def run_training(nproc: int, save_dir: Path, data: Path, *overrides: str,
                 env: dict[str, str] | None = None, expect: int | None = 0,
                 timeout: float = 300) -> list[int]:
    """Run pretrain.train on ``nproc`` ranks; assert every rank exits ``expect``."""
    argv = train_argv(save_dir, data, *overrides)
    log_dir = save_dir.parent / f"{save_dir.name}-logs"
    codes = wait_ranks(spawn_ranks(nproc, argv, env=env, log_dir=log_dir), log_dir, timeout)
    if expect is not None:
        assert codes == [expect] * nproc, f"exit codes {codes}\n{rank_logs(log_dir)}"
    return codes


def train_records(save_dir: Path) -> dict[int, dict]:
    """metrics.jsonl training records by step (the last record of a step wins)."""
    records = {}
    for line in (save_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            records[rec["step"]] = rec
    return records


def copy_checkpoint(src_dir: Path, tag: str, dst_dir: Path) -> None:
    """A save_dir holding only ``tag`` of ``src_dir`` (as if the run had stopped there)."""
    dst_dir.mkdir(parents=True)
    shutil.copytree(src_dir / tag, dst_dir / tag)
    (dst_dir / "latest").write_text(tag + "\n")
