"""LEV sharded over 2 tensor-parallel ranks (torchrun, gloo) equals the 1-rank module."""

import pytest
import torch

from tests.conftest import WORKERS, run_torchrun
from tests.workers.lev_cases import TP_CASE, build_lev, upstream_grad

pytestmark = pytest.mark.multiproc


def single_rank(output_norm: bool):
    lev = build_lev(output_norm=output_norm)
    ids = TP_CASE["ids"]
    out = lev(ids)
    out.backward(upstream_grad(ids.shape))
    return lev, out.detach()


@pytest.mark.parametrize("mode", ["plain", "sequence_parallel", "output_norm"])
def test_tp2_forward_and_every_gradient_equal_tp1(tmp_path, mode):
    lev, out = single_rank(output_norm=mode == "output_norm")
    result_file = tmp_path / "tp2.pt"
    run_torchrun(WORKERS / "lev_tp_worker.py", 2, str(result_file), mode)
    tp2 = torch.load(result_file)

    # Same global weights: the init depends on init_seed only, not on the TP size.
    torch.testing.assert_close(tp2["weights"]["mode_weights"], lev.mode_weights.detach())
    torch.testing.assert_close(tp2["weights"]["projection"], lev.projection.detach())
    torch.testing.assert_close(tp2["out"], out, rtol=1e-5, atol=1e-7)
    names = ("codebooks", "mode_weights", "projection") + (
        ("output_gain",) if mode == "output_norm" else ())
    for name in names:
        torch.testing.assert_close(tp2[name], getattr(lev, name).grad, rtol=1e-5, atol=1e-7,
                                   msg=lambda m, n=name: f"gradient of {n}: {m}")
