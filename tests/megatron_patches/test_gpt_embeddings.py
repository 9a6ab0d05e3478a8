"""GPTModel with lev / tied / untied input embeddings, TP=2 under torchrun (gloo, CPU)."""

import pytest
import torch

from tests.conftest import WORKERS, run_torchrun

pytestmark = pytest.mark.multiproc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for tp in (1, 2):
        path = tmp_path_factory.mktemp(f"tp{tp}") / "result.pt"
        run_torchrun(WORKERS / "gpt_embeddings_worker.py", tp, str(path))
        out[tp] = torch.load(path)
    return out


@pytest.mark.parametrize("kind", ["lev", "tied", "untied"])
def test_forward_backward_with_tp2_matches_tp1(runs, kind):
    tp1, tp2 = runs[1][kind], runs[2][kind]
    assert tp2["all_grads_finite"]
    assert tp2["loss"] == pytest.approx(tp1["loss"], rel=1e-5)


def test_tied_head_is_the_input_table_itself(runs):
    for tp in (1, 2):
        assert runs[tp]["tied"]["head_is_input_table"]
        assert runs[tp]["tied"]["head_param_count"] == 0


@pytest.mark.parametrize("kind", ["lev", "untied"])
def test_lev_and_untied_have_their_own_output_head(runs, kind):
    for tp in (1, 2):
        assert not runs[tp][kind]["head_is_input_table"]
        assert runs[tp][kind]["head_param_count"] == 512 * 64 // tp


def test_lev_replaces_the_word_embeddings_table(runs):
    assert runs[2]["lev"]["table_class"] == "LEVEmbedding"
    assert runs[2]["tied"]["table_class"] == "VocabParallelEmbedding"


@pytest.mark.parametrize("recompute", ["selective", "full"])
def test_activation_recomputation_changes_neither_loss_nor_gradients(runs, recompute):
    plain, recomputed = runs[2]["lev"], runs[2][f"lev+{recompute}"]
    assert recomputed["loss"] == plain["loss"]
    for a, b in zip(plain["grads"], recomputed["grads"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sequence_parallel_norm_gradients_are_summed_over_tensor_parallel_ranks(tmp_path):
    out = tmp_path / "sp.pt"
    run_torchrun(WORKERS / "sp_grad_worker.py", 2, str(out))
    result = torch.load(out)
    assert result["hooked"] == 1
    torch.testing.assert_close(result["norm"], torch.full((4,), 3.0))  # 1 + 2
    torch.testing.assert_close(result["other"], torch.full((4,), 1.0))  # rank 0's own
