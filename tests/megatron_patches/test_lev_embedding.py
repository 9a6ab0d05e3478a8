"""LEVEmbedding on one rank: numerics, init statistics, errors (LEV.md)."""

import pytest
import torch
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_patches.lev_embedding import (
    LEVEmbedding,
    TokenIdOutOfRangeError,
    lev_parameter_count,
)
from megatron_patches.lev_math import lev_embed
from tests.workers.lev_cases import VOCAB, build_lev


def reference(lev: LEVEmbedding, ids: torch.Tensor) -> torch.Tensor:
    """Per-position evaluation with the module's own weights."""
    return lev_embed(ids, vocab_size=lev.vocab_size, codebooks=lev.codebooks,
                     mode_weights=lev.mode_weights, projection=lev.projection,
                     coord_scale=lev.coord_scale, coord_offset=lev.coord_offset,
                     output_gain=lev.output_gain, knots=lev.knots)


@pytest.mark.parametrize("shared,knots,norm", [(False, "extended", False),
                                               (True, "extended", False),
                                               (False, "interior", False),
                                               (False, "interior", True)])
def test_distinct_id_evaluation_equals_per_position_evaluation(shared, knots, norm):
    lev = build_lev(share_codebooks=shared, knots=knots, output_norm=norm)
    ids = torch.tensor([[5, 5, 900, 13], [13, 996, 0, 5]])
    out = lev(ids)
    assert out.shape == (2, 4, lev.config.hidden_size)
    torch.testing.assert_close(out, reference(lev, ids), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("norm", [False, True])
def test_gradients_of_distinct_id_evaluation_equal_per_position_gradients(norm):
    lev = build_lev(output_norm=norm)
    ids = torch.tensor([[5, 5, 900, 13], [13, 996, 0, 5]])
    upstream = torch.randn(2, 4, lev.config.hidden_size, generator=torch.Generator().manual_seed(0))
    lev(ids).backward(upstream)
    ours = [p.grad.clone() for p in lev.parameters()]
    lev.zero_grad()
    reference(lev, ids).backward(upstream)
    for mine, ref in zip(ours, (p.grad for p in lev.parameters()), strict=True):
        # Repeated ids sum their gradients in another order than per-position evaluation:
        # fp32 rounding of ~1e-6 on O(1) factors (a CI run saw 1.4e-6 with an unseeded upstream).
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=5e-6)


def test_swapped_digits_get_different_embeddings_with_shared_codebooks():
    lev = build_lev(share_codebooks=True)
    base = lev.base
    a, b = 3 + 5 * base, 5 + 3 * base
    out = lev(torch.tensor([[a, b]]))
    assert not torch.allclose(out[0, 0], out[0, 1])


@pytest.mark.parametrize("bad", [VOCAB, -1, 10 * VOCAB])
def test_out_of_range_ids_raise_an_error_naming_the_id_and_vocab(bad):
    lev = build_lev()
    ids = torch.tensor([[1, 2, bad, 3]])
    with pytest.raises(TokenIdOutOfRangeError,
                       match=rf"token id {bad} at batch position \[0, 2\] .*\[0, {VOCAB}\)"):
        lev(ids)


def test_computes_in_fp32_and_returns_the_model_dtype():
    config = TransformerConfig(num_layers=1, hidden_size=32, num_attention_heads=4,
                               use_cpu_initialization=True, params_dtype=torch.bfloat16,
                               bf16=True)
    lev = LEVEmbedding(config, vocab_size=300, num_coords=2, seed_dim=4, grid_size=5,
                       num_modes=8, init_seed=0)
    ids = torch.tensor([[1, 299]])
    out = lev(ids)
    assert out.dtype == torch.bfloat16
    fp32 = lev_embed(ids, vocab_size=300, codebooks=lev.codebooks.float(),
                     mode_weights=lev.mode_weights.float(), projection=lev.projection.float())
    torch.testing.assert_close(out, fp32.to(torch.bfloat16))


@pytest.mark.parametrize("shared,norm", [(False, False), (True, False), (False, True)])
def test_parameter_count_matches_the_closed_form(shared, norm):
    lev = build_lev(share_codebooks=shared, output_norm=norm)
    expected = lev_parameter_count(vocab_size=VOCAB, hidden_size=lev.config.hidden_size,
                                   num_coords=2, seed_dim=4, grid_size=6, num_modes=8,
                                   share_codebooks=shared, output_norm=norm)
    assert sum(p.numel() for p in lev.parameters()) == expected


def test_output_norm_starts_every_token_at_the_tied_tables_init_rms():
    lev = build_lev(output_norm=True)
    plain = build_lev()
    rms = _all_embeddings(lev).pow(2).mean(dim=-1).sqrt()
    torch.testing.assert_close(rms, torch.full_like(rms, lev.config.init_method_std))
    # Without the norm the tokens' RMS spread over a wide range (the modes' magnitudes).
    plain_rms = _all_embeddings(plain).pow(2).mean(dim=-1).sqrt()
    assert plain_rms.max() > 3 * plain_rms.min()


def test_output_norm_changes_only_the_scale_of_each_embedding():
    lev, plain = build_lev(output_norm=True), build_lev()
    cos = torch.nn.functional.cosine_similarity(_all_embeddings(lev), _all_embeddings(plain),
                                                dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos))


@pytest.mark.parametrize("reduce_scatter", [False, True])
def test_output_gain_is_marked_for_the_sequence_parallel_gradient_sum(reduce_scatter):
    lev = build_lev(output_norm=True, reduce_scatter=reduce_scatter)
    assert lev.output_gain.sequence_parallel is reduce_scatter


def _all_embeddings(lev: LEVEmbedding, chunk: int = 2048) -> torch.Tensor:
    with torch.no_grad():
        ids = torch.arange(lev.vocab_size)
        return torch.cat([lev(ids[i:i + chunk][None])[0] for i in range(0, len(ids), chunk)])


def _mean_abs_cosine_of_random_distinct_pairs(e: torch.Tensor, pairs: int = 20000) -> float:
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, len(e), (pairs,), generator=g)
    j = (i + torch.randint(1, len(e), (pairs,), generator=g)) % len(e)
    return torch.nn.functional.cosine_similarity(e[i], e[j], dim=-1).abs().mean().item()


TINY = (4096, 128, dict(num_coords=2, seed_dim=8, grid_size=8, num_modes=128))  # tiny_lev
# The 1.2B shape (lev_1b2.yaml): V = 50304, d = 2048, LEV defaults.
FULL = (50304, 2048, dict(num_coords=2, seed_dim=16, grid_size=16, num_modes=1024))


@pytest.mark.parametrize(
    "vocab,hidden,lev_shape,shared",
    [(*TINY, False), (*TINY, True), pytest.param(*FULL, False, marks=pytest.mark.slow)],
    ids=["tiny", "tiny-shared", "1b2"],
)
def test_init_statistics_over_the_whole_vocabulary(vocab, hidden, lev_shape, shared):
    std = 0.02
    config = TransformerConfig(num_layers=1, hidden_size=hidden, num_attention_heads=4,
                               use_cpu_initialization=True, init_method_std=std)
    lev = LEVEmbedding(config, vocab_size=vocab, init_seed=1234, share_codebooks=shared,
                       **lev_shape)
    e = _all_embeddings(lev)
    per_dim_std = e.std(dim=0)
    assert 0.5 * std <= per_dim_std.min() and per_dim_std.max() <= 2.0 * std, (
        f"per-dim std in [{per_dim_std.min():.4f}, {per_dim_std.max():.4f}]")
    assert _mean_abs_cosine_of_random_distinct_pairs(e) < 0.2
