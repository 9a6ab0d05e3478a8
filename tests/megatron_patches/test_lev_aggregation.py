"""LEV's MLP aggregation (``lev.aggregation=mlp``): math, init scale, TP=2, counts, errors."""

import math

import pytest
import torch
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_patches.lev_embedding import LEVEmbedding, lev_parameter_count
from megatron_patches.lev_math import SILU_GAUSSIAN_VARIANCE, digit_base, lev_embed
from tests.conftest import WORKERS, run_torchrun
from tests.workers.lev_cases import HIDDEN, MLP, TP_CASE, VOCAB, build_lev, upstream_grad

IDS = torch.tensor([[5, 5, 900, 13], [13, 996, 0, 5]])


def reference(lev: LEVEmbedding, ids: torch.Tensor) -> torch.Tensor:
    """Per-position evaluation with the module's own weights."""
    return lev_embed(ids, vocab_size=lev.vocab_size, codebooks=lev.codebooks,
                     mode_weights=lev.mode_weights, projection=lev.projection,
                     output_gain=lev.output_gain, knots=lev.knots,
                     aggregation_in=lev.aggregation_in)


# --- the math --------------------------------------------------------------------------

def test_mlp_forward_is_d_wide_and_backward_reaches_every_parameter():
    lev = build_lev(**MLP)
    out = lev(IDS)
    assert out.shape == (2, 4, HIDDEN)
    assert lev.aggregation_in.shape == (6, 8) and lev.projection.shape == (HIDDEN, 6)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(0)))
    for name, p in lev.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert p.grad.abs().sum() > 0, f"{name} got no gradient"


def test_mlp_lev_function_passes_fp64_gradcheck():
    g = torch.Generator().manual_seed(2)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    vocab, k, s, grid, modes, hidden, d = 50, 2, 3, 4, 5, 3, 4
    ids = torch.tensor([[0, 7, 49], [7, 8, 23]])
    weights = (rand(k, digit_base(vocab, k), s), rand(s, grid, modes), rand(hidden, modes),
               rand(d, hidden))

    def fn(cb, w, w_in, p):
        return lev_embed(ids, vocab_size=vocab, codebooks=cb, mode_weights=w, projection=p,
                         aggregation_in=w_in)

    assert torch.autograd.gradcheck(fn, weights)


def test_mlp_distinct_id_evaluation_equals_per_position_evaluation():
    lev = build_lev(**MLP)
    torch.testing.assert_close(lev(IDS), reference(lev, IDS), rtol=1e-6, atol=1e-7)


def test_mlp_gradients_of_distinct_id_evaluation_equal_per_position_gradients():
    lev = build_lev(**MLP)
    upstream = torch.randn(2, 4, HIDDEN, generator=torch.Generator().manual_seed(0))
    lev(IDS).backward(upstream)
    ours = [p.grad.clone() for p in lev.parameters()]
    lev.zero_grad()
    reference(lev, IDS).backward(upstream)
    for mine, ref in zip(ours, (p.grad for p in lev.parameters()), strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=5e-6)


def test_silu_gaussian_variance_constant_is_var_silu_of_a_standard_normal():
    x = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    density = torch.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    a = torch.nn.functional.silu(x)
    dx = x[1] - x[0]
    mean, square = (a * density).sum() * dx, (a * a * density).sum() * dx
    assert (square - mean**2).item() == pytest.approx(SILU_GAUSSIAN_VARIANCE, abs=1e-5)


# --- init ------------------------------------------------------------------------------

TINY_LEV = dict(num_coords=2, seed_dim=16, grid_size=8, num_modes=64, knots="interior")


def _all_embeddings(lev: LEVEmbedding, chunk: int = 2048) -> torch.Tensor:
    with torch.no_grad():
        ids = torch.arange(lev.vocab_size)
        return torch.cat([lev(ids[i:i + chunk][None])[0] for i in range(0, len(ids), chunk)])


@pytest.fixture(scope="module")
def tiny_embeddings():
    """Every id's embedding at tiny_lev.yaml's shape, linear and MLP, same init seed."""
    config = TransformerConfig(num_layers=1, hidden_size=128, num_attention_heads=4,
                               use_cpu_initialization=True, init_method_std=0.02)

    def embeddings(**kw):
        return _all_embeddings(LEVEmbedding(config, vocab_size=4096, init_seed=1234,
                                            **TINY_LEV, **kw))

    return {"linear": embeddings(), "mlp": embeddings(aggregation="mlp"),
            "mlp+norm": embeddings(aggregation="mlp", output_norm=True)}


def test_mlp_init_starts_at_the_linear_projections_output_scale(tiny_embeddings):
    linear, mlp = tiny_embeddings["linear"], tiny_embeddings["mlp"]
    ratio = (mlp.pow(2).mean().sqrt() / linear.pow(2).mean().sqrt()).item()
    assert 0.9 <= ratio <= 1.1, f"RMS over the vocabulary: mlp / linear = {ratio:.3f}"


def test_mlp_init_meets_levs_init_statistics(tiny_embeddings):
    e, std = tiny_embeddings["mlp"], 0.02
    per_dim_std = e.std(dim=0)
    assert 0.5 * std <= per_dim_std.min() and per_dim_std.max() <= 2.0 * std
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, len(e), (20000,), generator=g)
    j = (i + torch.randint(1, len(e), (20000,), generator=g)) % len(e)
    assert torch.nn.functional.cosine_similarity(e[i], e[j], dim=-1).abs().mean() < 0.2


def test_mlp_init_maps_the_activations_common_mean_to_zero():
    lev = build_lev(**MLP)
    torch.testing.assert_close(lev.projection.sum(dim=1), torch.zeros(HIDDEN), atol=1e-7,
                               rtol=0)


def test_output_norm_on_the_mlp_starts_every_token_at_the_tied_tables_init_rms(
        tiny_embeddings):
    rms = tiny_embeddings["mlp+norm"].pow(2).mean(dim=-1).sqrt()
    torch.testing.assert_close(rms, torch.full_like(rms, 0.02))


# --- parameters and errors -------------------------------------------------------------

@pytest.mark.parametrize("hidden,shared,norm", [(None, False, False), (6, False, False),
                                                (12, True, True)])
def test_mlp_parameter_count_matches_the_closed_form(hidden, shared, norm):
    lev = build_lev(aggregation="mlp", aggregation_hidden=hidden, share_codebooks=shared,
                    output_norm=norm)
    expected = lev_parameter_count(vocab_size=VOCAB, hidden_size=HIDDEN, num_coords=2,
                                   seed_dim=4, grid_size=6, num_modes=8, share_codebooks=shared,
                                   output_norm=norm, aggregation="mlp", aggregation_hidden=hidden)
    assert sum(p.numel() for p in lev.parameters()) == expected


def test_mlp_closed_form_replaces_r_times_d_by_r_times_h_plus_h_times_d():
    shape = dict(vocab_size=4096, hidden_size=128, num_coords=2, seed_dim=16, grid_size=8,
                 num_modes=64, share_codebooks=False)
    linear = lev_parameter_count(**shape)
    assert lev_parameter_count(**shape, aggregation="mlp") - linear == 64 * 64
    assert lev_parameter_count(**shape, aggregation="mlp", aggregation_hidden=128) - linear == (
        64 * 128 + 128 * 128 - 64 * 128)


def test_an_unknown_aggregation_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"lev\.aggregation='deep'; use one of \('linear', 'mlp'\)"):
        build_lev(aggregation="deep")


def test_a_hidden_width_for_the_linear_aggregation_is_refused():
    with pytest.raises(ValueError, match=r"lev\.aggregation_hidden=16 needs lev\.aggregation=mlp"):
        build_lev(aggregation_hidden=16)


# --- tensor parallelism ----------------------------------------------------------------

@pytest.mark.multiproc
@pytest.mark.parametrize("mode", ["mlp", "sequence_parallel+mlp",
                                  "sequence_parallel+output_norm+mlp"])
def test_tp2_with_the_mlp_aggregation_equals_tp1(tmp_path, mode):
    lev = build_lev(output_norm="output_norm" in mode, **MLP)
    ids = TP_CASE["ids"]
    out = lev(ids)
    out.backward(upstream_grad(ids.shape))
    result_file = tmp_path / "tp2.pt"
    run_torchrun(WORKERS / "lev_tp_worker.py", 2, str(result_file), mode)
    tp2 = torch.load(result_file)

    # Same global weights: the init depends on init_seed only, not on the TP size.
    for name in ("aggregation_in", "projection", "mode_weights"):
        torch.testing.assert_close(tp2["weights"][name], getattr(lev, name).detach())
    torch.testing.assert_close(tp2["out"], out.detach(), rtol=1e-5, atol=1e-7)
    if "sequence_parallel" in mode:  # the export's table, on every rank
        with torch.no_grad():
            table = lev(torch.arange(VOCAB)[None])[0]
        for rank_table in tp2["table"]:
            torch.testing.assert_close(rank_table, table, rtol=1e-5, atol=1e-7)
    if "output_norm" in mode:
        for rank_grad in tp2["output_gain"]:
            torch.testing.assert_close(rank_grad, lev.output_gain.grad, rtol=1e-5, atol=1e-7)
    # P's gradient sums O(1) activation x upstream products over positions, in another
    # order under sequence parallelism: a few fp32 ulps of those terms (~1e-7 each) remain
    # where the sum cancels, so the absolute tolerance is that of O(1) terms.
    for name in ("codebooks", "mode_weights", "aggregation_in", "projection"):
        torch.testing.assert_close(tp2[name], getattr(lev, name).grad, rtol=1e-5, atol=1e-6,
                                   msg=lambda m, n=name: f"gradient of {n}: {m}")
