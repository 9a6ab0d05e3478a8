"""Restart reads through DeepSpeed's own checkpoint engine are memory-mapped: the node's
page cache holds one copy of a file that every rank of the node reads."""

from __future__ import annotations

import types
from pathlib import Path

import torch
from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

from megatron_patches.deepspeed_mapped_load import map_checkpoint_reads

MIB = 1 << 20


def _engine() -> types.SimpleNamespace:
    return types.SimpleNamespace(checkpoint_engine=TorchCheckpointEngine())


def _bytes_read() -> int:
    """Bytes this process has read through read() and friends (/proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _model_states(path: Path) -> dict:
    state = {"module": {"w": torch.arange(8 * MIB, dtype=torch.float32).reshape(2048, -1)},
             "global_steps": 7}
    torch.save(state, path)
    return state


def test_model_states_are_mapped_from_the_file_not_read_into_private_memory(tmp_path):
    path = tmp_path / "mp_rank_00_model_states.pt"
    saved = _model_states(path)  # 32 MiB of weights
    engine = _engine()
    map_checkpoint_reads(engine)

    before = _bytes_read()
    loaded = engine.checkpoint_engine.load(str(path), map_location=lambda storage, loc: storage)
    read = _bytes_read() - before

    weights = loaded["module"]["w"]
    assert read < MIB, f"{read} bytes copied through read() for a 32 MiB file"
    assert str(path) in Path("/proc/self/maps").read_text()  # the weights are its pages
    assert torch.equal(weights, saved["module"]["w"]) and loaded["global_steps"] == 7


def test_a_file_in_the_legacy_serialization_still_loads(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    engine = _engine()
    map_checkpoint_reads(engine)
    assert torch.equal(engine.checkpoint_engine.load(str(path))["w"], torch.ones(3))


def test_mapping_twice_wraps_the_loader_once():
    engine = _engine()
    map_checkpoint_reads(engine)
    first = engine.checkpoint_engine.load
    map_checkpoint_reads(engine)
    assert engine.checkpoint_engine.load == first
