"""The pieces: work-unit cutting reads every record exactly once; packing; the split hash."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zstandard

from data_prep.inputs import assign_units, plan_units
from data_prep.packing import Packer, is_val
from data_prep.readers import iter_piece


def _texts(units) -> list[str]:
    return [t for unit in units for piece in unit for t, _, _ in iter_piece(piece) if t is not None]


@pytest.mark.parametrize("unit_bytes", [1, 7, 100, 1000, 1 << 20])
def test_jsonl_byte_ranges_read_each_line_once(tmp_path, unit_bytes):
    path = tmp_path / "a.jsonl"
    docs = [f"doc {i} " + "x" * (i * 7 % 50) for i in range(200)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    assert _texts(plan_units([str(path)], unit_bytes)) == docs


@pytest.mark.parametrize("unit_bytes", [1, 5000, 1 << 30])
def test_zst_strides_read_each_line_once(tmp_path, unit_bytes):
    path = tmp_path / "a.jsonl.zst"
    docs = [f"doc {i}" for i in range(300)]
    path.write_bytes(
        zstandard.ZstdCompressor().compress(
            "".join(json.dumps({"text": d}) + "\n" for d in docs).encode()
        )
    )
    assert sorted(_texts(plan_units([str(path)], unit_bytes))) == sorted(docs)


def test_every_unit_goes_to_exactly_one_rank():
    from data_prep.readers import Piece

    units = [[Piece("f", "txt", 0, 0, size)] for size in (5, 1, 9, 9, 3, 0, 2, 7, 7, 1)]
    for world in (1, 2, 3, 16):
        assigned = sorted(u for rank in assign_units(units, world) for u in rank)
        assert assigned == list(range(10))


def test_packer_cuts_eod_separated_blocks_and_keeps_the_tail():
    packer = Packer(block_tokens=4, eod_id=0, dtype="uint16")
    blocks = packer.add([[5, 6, 7], [8], [9, 10]])  # stream 5 6 7 0 8 0 9 10 0
    np.testing.assert_array_equal(blocks, [[5, 6, 7, 0], [8, 0, 9, 10]])
    assert packer.pending_tokens == 1


def test_val_split_is_a_stable_hash_of_the_text():
    texts = [f"document {i}" for i in range(2000)]
    val = [t for t in texts if is_val(t, 0.1)]
    assert 120 < len(val) < 280
    assert val == [t for t in texts if is_val(t, 0.1)]
    assert not any(is_val(t, 0.0) for t in texts)
