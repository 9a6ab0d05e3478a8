"""The training sample order: a keyed bijection owned by this project (pretrain/data/permutation.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pretrain.data.permutation import KeyedPermutation, order_fingerprint
from pretrain.data.sampler import SampleOrder

# Written down once from this implementation. If these change, every resumed run would
# silently read another order: change ORDER_ALGORITHM instead (the fingerprint refuses).
GOLDEN_EPOCH0 = [638, 459, 68, 36, 840, 534, 675, 157, 933, 828, 901, 784]
GOLDEN_EPOCH1 = [72, 289, 651, 38, 564, 157, 326, 304, 552, 672, 686, 216]
GOLDEN_FINGERPRINT = "7b510060673969ef"


def test_the_order_of_a_split_is_pinned_by_golden_values():
    perm = KeyedPermutation(1000, seed=1234)
    assert perm.apply(0, np.arange(12)).tolist() == GOLDEN_EPOCH0
    assert perm.apply(1, np.arange(12)).tolist() == GOLDEN_EPOCH1
    assert order_fingerprint(1000, 1234) == GOLDEN_FINGERPRINT


def test_another_process_computes_the_same_order():
    code = ("import numpy as np; from pretrain.data.permutation import KeyedPermutation as K; "
            "print(K(1000, 1234).apply(0, np.arange(12)).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str(GOLDEN_EPOCH0)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 65, 1000, 4097])
def test_every_epoch_is_a_permutation_of_all_samples(n):
    perm = KeyedPermutation(n, seed=5)
    for epoch in (0, 1, 9):
        assert np.array_equal(np.sort(perm.apply(epoch, np.arange(n))), np.arange(n))


def test_seed_and_epoch_each_change_the_order_and_do_not_alias():
    n = 1000
    orders = {(s, e): tuple(KeyedPermutation(n, s).apply(e, np.arange(n)))
              for s in (0, 1, 2) for e in (0, 1, 2)}
    assert len(set(orders.values())) == len(orders)  # (1, 0) is not (0, 1): no seed + epoch


def test_the_order_is_shuffled_not_a_rotation_of_positions():
    ids = KeyedPermutation(100_000, seed=7).apply(0, np.arange(100_000))
    assert abs(np.corrcoef(np.arange(100_000), ids)[0, 1]) < 0.02
    assert abs(np.corrcoef(ids[:-1], ids[1:])[0, 1]) < 0.02


def test_a_300b_token_split_maps_positions_without_building_an_index():
    n = 300_000_000_000 // 513  # 584.8M samples
    order = SampleOrder(n, seed=1)
    ids = order.sample_ids(n - 4, n + 4)  # straddles the epoch boundary
    assert ids.dtype == np.int64 and ((ids >= 0) & (ids < n)).all()
    assert np.array_equal(ids, order.sample_ids(n - 4, n + 4))


def test_block_size_is_a_cache_detail_that_never_changes_the_order():
    n = 1000
    direct = np.concatenate([KeyedPermutation(n, 3).apply(e, np.arange(n)) for e in (0, 1, 2)])
    for block in (1, 7, 64, 65536):
        order = SampleOrder(n, seed=3, block=block)
        for start, stop in ((0, 3000), (995, 1010), (1999, 2001), (513, 514)):
            assert np.array_equal(order.sample_ids(start, stop), direct[start:stop])
