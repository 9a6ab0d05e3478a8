"""LEV sharded over 2 tensor-parallel ranks (torchrun, gloo) equals the 1-rank module."""

import pytest
import torch

from tests.conftest import WORKERS, run_torchrun
from tests.workers.lev_cases import TP_CASE, VOCAB, build_lev, upstream_grad

pytestmark = pytest.mark.multiproc


def single_rank(output_norm: bool):
    """The 1-rank module's output and gradients on the TP case (the reference)."""
    lev = build_lev(output_norm=output_norm)
    ids = TP_CASE["ids"]
    out = lev(ids)
    out.backward(upstream_grad(ids.shape))
    return lev, out.detach()


@pytest.mark.parametrize("mode", ["plain", "sequence_parallel", "output_norm",
                                  "sequence_parallel+output_norm"])
def test_tp2_forward_and_every_gradient_equal_tp1(tmp_path, mode):
    norm = "output_norm" in mode
    lev, out = single_rank(output_norm=norm)
    result_file = tmp_path / "tp2.pt"
    run_torchrun(WORKERS / "lev_tp_worker.py", 2, str(result_file), mode)
    tp2 = torch.load(result_file)

    # Same global weights: the init depends on init_seed only, not on the TP size.
    torch.testing.assert_close(tp2["weights"]["mode_weights"], lev.mode_weights.detach())
    torch.testing.assert_close(tp2["weights"]["projection"], lev.projection.detach())
    torch.testing.assert_close(tp2["out"], out, rtol=1e-5, atol=1e-7)
    if "sequence_parallel" in mode:  # the export's table, on every rank
        with torch.no_grad():
            table = lev(torch.arange(VOCAB)[None])[0]
        for rank_table in tp2["table"]:
            torch.testing.assert_close(rank_table, table, rtol=1e-5, atol=1e-7)
    if norm:  # each rank's gradient of the replicated gain is the full one
        for rank_grad in tp2["output_gain"]:
            torch.testing.assert_close(rank_grad, lev.output_gain.grad, rtol=1e-5, atol=1e-7)
    for name in ("codebooks", "mode_weights", "projection"):
        torch.testing.assert_close(tp2[name], getattr(lev, name).grad, rtol=1e-5, atol=1e-7,
                                   msg=lambda m, n=name: f"gradient of {n}: {m}")
