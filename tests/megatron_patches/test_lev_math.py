"""The LEV function itself (LEV.md "The function" and "Numerics")."""

import pytest
import torch

from megatron_patches.lev_math import (
    digit_base,
    lev_embed,
    quadratic_bspline_basis,
    rms_normalise,
    signed_log_product,
    token_coordinates,
)


def test_digit_base_is_the_smallest_base_covering_the_vocabulary():
    assert digit_base(50304, 2) == 225  # 224**2 = 50176 < 50304 <= 225**2
    assert digit_base(50625, 2) == 225  # an exact square must not round up
    assert digit_base(4096, 3) == 16
    assert digit_base(1000, 1) == 1000


def test_coordinates_are_base_b_digits_least_significant_first():
    ids = torch.tensor([0, 1, 224, 225, 50303])
    coords = token_coordinates(ids, 225, 2)
    assert coords.tolist() == [[0, 0], [1, 0], [224, 0], [0, 1], [128, 223]]
    assert (coords[:, 0] + 225 * coords[:, 1]).tolist() == ids.tolist()


def test_interior_bspline_basis_matches_the_quadratic_formula_and_sums_to_one_inside():
    u = torch.tensor([0.3, 0.5, 0.71], dtype=torch.float64)
    phi = quadratic_bspline_basis(u, 11, "interior")
    t = (u[:, None] - torch.linspace(0, 1, 11, dtype=torch.float64)).abs() * 10
    expected = torch.where(t < 0.5, 0.75 - t**2,
                           torch.where(t < 1.5, 0.5 * (1.5 - t) ** 2, torch.zeros_like(t)))
    torch.testing.assert_close(phi, expected)
    torch.testing.assert_close(phi.sum(-1), torch.ones(3, dtype=torch.float64))
    assert ((phi > 0).sum(-1) <= 3).all()


def test_interior_bspline_basis_is_not_a_partition_of_unity_at_the_ends():
    # The defect the extended layout removes: only half of the mass is left at u = 0 and 1.
    phi = quadratic_bspline_basis(torch.tensor([0.0, 1.0], dtype=torch.float64), 16, "interior")
    torch.testing.assert_close(phi.sum(-1), torch.full((2,), 0.875, dtype=torch.float64))


@pytest.mark.parametrize("grid_size", [3, 4, 8, 16, 33])
def test_extended_bspline_basis_is_a_partition_of_unity_on_the_closed_interval(grid_size):
    u = torch.linspace(0.0, 1.0, 100_001, dtype=torch.float64)  # includes both ends
    phi = quadratic_bspline_basis(u, grid_size, "extended")
    assert phi.shape == (u.numel(), grid_size)
    assert (phi.sum(-1) - 1).abs().max().item() < 1e-6
    assert (phi >= 0).all() and ((phi > 1e-12).sum(-1) <= 3).all()


def test_extended_bspline_basis_matches_the_quadratic_formula_at_shifted_centres():
    u = torch.tensor([0.0, 0.13, 0.5, 1.0], dtype=torch.float64)
    g = 6
    h = 1 / (g - 2)
    centres = (torch.arange(g, dtype=torch.float64) - 0.5) * h
    t = (u[:, None] - centres).abs() / h
    expected = torch.where(t < 0.5, 0.75 - t**2,
                           torch.where(t < 1.5, 0.5 * (1.5 - t) ** 2, torch.zeros_like(t)))
    torch.testing.assert_close(quadratic_bspline_basis(u, g, "extended"), expected)


def test_signed_log_product_equals_the_plain_product():
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    torch.testing.assert_close(signed_log_product(x), x.prod(dim=1))


def test_signed_log_product_survives_partial_products_that_overflow_fp32():
    x = torch.tensor([[[1e30], [1e30], [1e-30], [1e-30]]])
    assert torch.isinf(x.prod(dim=1)).all()  # the naive product overflows
    torch.testing.assert_close(signed_log_product(x), torch.ones(1, 1))


def test_signed_log_product_gradient_is_finite_at_an_exact_zero_factor():
    x = torch.tensor([[[0.0], [2.0], [-3.0]]], requires_grad=True)
    signed_log_product(x).sum().backward()
    # d/dx0 = x1 * x2 = -6, the others see the zero factor.
    torch.testing.assert_close(x.grad, torch.tensor([[[-6.0], [0.0], [0.0]]]))


def test_signed_log_product_passes_fp64_gradcheck():
    x = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(signed_log_product, (x,))


@pytest.mark.parametrize("shared", [False, True], ids=["per-digit", "shared"])
def test_lev_function_passes_fp64_gradcheck(shared):
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    vocab, k, s, grid, modes, d = 50, 2, 3, 4, 5, 4
    ids = torch.tensor([[0, 7, 49], [7, 8, 23]])
    base = digit_base(vocab, k)
    codebooks = rand(base, s) if shared else rand(k, base, s)
    scale, offset = (rand(k, s), rand(k, s)) if shared else (None, None)
    weights = (codebooks, rand(s, grid, modes), rand(d, modes))
    extra = (scale, offset) if shared else ()

    def fn(cb, w, p, *so):
        return lev_embed(ids, vocab_size=vocab, codebooks=cb, mode_weights=w, projection=p,
                         coord_scale=so[0] if so else None, coord_offset=so[1] if so else None)

    assert torch.autograd.gradcheck(fn, (*weights, *extra))


def test_lev_function_with_output_norm_passes_fp64_gradcheck():
    g = torch.Generator().manual_seed(1)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    vocab, k, s, grid, modes, d = 50, 2, 3, 4, 5, 4
    ids = torch.tensor([[0, 7, 49], [7, 8, 23]])
    weights = (rand(k, digit_base(vocab, k), s), rand(s, grid, modes), rand(d, modes), rand(d))

    def fn(cb, w, p, gain):
        return lev_embed(ids, vocab_size=vocab, codebooks=cb, mode_weights=w, projection=p,
                         output_gain=gain)

    assert torch.autograd.gradcheck(fn, weights)


def test_rms_normalise_gives_each_row_unit_rms_times_the_gain():
    x = torch.tensor([[3.0, 4.0], [0.1, -0.1]])  # row RMS sqrt(12.5) and 0.1 (no centring)
    out = rms_normalise(x, torch.tensor([2.0, 0.5]))
    r = 12.5 ** 0.5
    torch.testing.assert_close(out, torch.tensor([[6.0 / r, 2.0 / r], [2.0, -0.5]]))
