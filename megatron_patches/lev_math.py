"""The LEV function as pure tensor math: token id -> embedding, no parallelism.

LEV (Leviathan, arXiv 2601.22040) computes a token's input embedding from its index:
digits of the id pick codebook rows whose sum is a seed, the squashed seed feeds
``R`` rank-1 separable functions built from quadratic B-splines, and a projection
mixes those modes into the model width. See ``../shared/docs/LEV.md``.

Everything here is a function of ids and weights so that it can be tested (gradcheck,
per-position vs per-distinct-id) apart from the tensor-parallel plumbing in
:mod:`megatron_patches.lev_embedding`, which calls these same functions on its shards.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "digit_base",
    "token_coordinates",
    "quadratic_bspline_basis",
    "signed_log_product",
    "separable_modes",
    "seed_from_codebooks",
    "lev_embed",
]


def digit_base(vocab_size: int, num_coords: int) -> int:
    """Smallest integer base ``b`` with ``b ** num_coords >= vocab_size``.

    LEV.md writes ``b = ceil(V ** (1/K))``; computed in integers because the float
    root can land a hair above an exact power (``ceil(50625 ** 0.5)`` must be 225).
    """
    if vocab_size < 1 or num_coords < 1:
        raise ValueError(f"need vocab_size >= 1 and num_coords >= 1, got {vocab_size}, {num_coords}")
    base = max(2, round(vocab_size ** (1.0 / num_coords)))
    while base ** num_coords < vocab_size:
        base += 1
    while base > 2 and (base - 1) ** num_coords >= vocab_size:
        base -= 1
    return base


def token_coordinates(ids: Tensor, base: int, num_coords: int) -> Tensor:
    """Digits ``c_j = (i // b**j) % b`` of each id, shape ``[*ids.shape, num_coords]``."""
    powers = base ** torch.arange(num_coords, device=ids.device, dtype=torch.int64)
    return torch.div(ids.to(torch.int64).unsqueeze(-1), powers, rounding_mode="floor") % base


def quadratic_bspline_basis(u: Tensor, grid_size: int) -> Tensor:
    """Quadratic B-spline values at ``grid_size`` uniform knots on [0, 1].

    Args:
        u: values in (0, 1), any shape.
        grid_size: number of knots ``G`` (knot ``k`` sits at ``k / (G - 1)``).

    Returns:
        ``[*u.shape, G]``; at most three entries per value are non-zero.
    """
    knots = torch.linspace(0.0, 1.0, grid_size, device=u.device, dtype=u.dtype)
    t = (u.unsqueeze(-1) - knots).abs() * (grid_size - 1)
    inner = 0.75 - t * t
    outer = 0.5 * (1.5 - t).clamp(min=0.0) ** 2
    return torch.where(t < 0.5, inner, outer)


class _SignedLogProduct(torch.autograd.Function):
    """Product over dim 1 computed as sign parity times ``exp(sum log|x|)``.

    Multiplying 16+ factors directly can overflow or underflow fp32 in the partial
    products even when the result is representable. Autograd of the log form would
    divide by the factor (NaN at an exact zero), so the backward pass builds each
    "product of all other factors" from exclusive prefix and suffix log-sums instead:
    no division, no ``inf - inf``.
    """

    @staticmethod
    def forward(ctx, factors: Tensor) -> Tensor:  # factors: [n, s, r]
        log_abs = factors.abs().log()
        signs = torch.where(factors < 0, -1.0, 1.0).to(factors.dtype)
        ctx.save_for_backward(log_abs, signs)
        return signs.prod(dim=1) * log_abs.sum(dim=1).exp()

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tensor:
        log_abs, signs = ctx.saved_tensors
        log_others = _exclusive_scan(log_abs, torch.cumsum, 0.0)
        sign_others = _exclusive_scan(signs, torch.cumprod, 1.0)
        return grad_out.unsqueeze(1) * sign_others * log_others.exp()


def _exclusive_scan(x: Tensor, scan, identity: float) -> Tensor:
    """``out[:, m] = scan over x[:, j] for all j != m`` (dim 1), from two one-sided scans."""
    pad = torch.full_like(x[:, :1], identity)
    before = torch.cat([pad, scan(x[:, :-1], dim=1)], dim=1)
    after = torch.cat([scan(x[:, 1:].flip(1), dim=1).flip(1), pad], dim=1)
    return before + after if scan is torch.cumsum else before * after


def signed_log_product(factors: Tensor) -> Tensor:
    """Overflow-safe product of ``factors`` over dim 1 (``[n, s, r] -> [n, r]``)."""
    return _SignedLogProduct.apply(factors)


def separable_modes(u: Tensor, mode_weights: Tensor) -> Tensor:
    """Rank-1 separable modes ``mode_r = prod_m sum_k W[m, k, r] * phi_k(u_m)``.

    Args:
        u: squashed seeds ``[n, s]``.
        mode_weights: ``W`` of shape ``[s, G, R]`` (``R`` may be a tensor-parallel shard).

    Returns:
        ``[n, R]``.
    """
    basis = quadratic_bspline_basis(u, mode_weights.shape[1])  # [n, s, G]
    factors = torch.einsum("nsg,sgr->nsr", basis, mode_weights)
    return signed_log_product(factors)


def seed_from_codebooks(
    coords: Tensor,
    codebooks: Tensor,
    coord_scale: Tensor | None = None,
    coord_offset: Tensor | None = None,
) -> Tensor:
    """Seed ``z = sum_j C_j[c_j]`` for digits ``coords`` ``[n, K]``.

    ``codebooks`` is ``[K, b, s]`` (one codebook per coordinate) or ``[b, s]`` (shared).
    With a shared codebook, a plain sum would map ids with swapped digits to the same
    seed, so each coordinate applies its own learned scale and offset:
    ``z = sum_j (scale_j * C[c_j] + offset_j)``.
    """
    if codebooks.dim() == 3:
        num_coords = codebooks.shape[0]
        rows = codebooks[torch.arange(num_coords, device=coords.device), coords]  # [n, K, s]
        return rows.sum(dim=1)
    rows = codebooks[coords]  # [n, K, s]
    return (rows * coord_scale + coord_offset).sum(dim=1)


def lev_embed(
    ids: Tensor,
    *,
    vocab_size: int,
    codebooks: Tensor,
    mode_weights: Tensor,
    projection: Tensor,
    coord_scale: Tensor | None = None,
    coord_offset: Tensor | None = None,
) -> Tensor:
    """Reference single-device LEV: embeddings for ``ids`` evaluated per position.

    Computes in the dtype of the weights given (fp32 or fp64 for gradcheck). This is
    the specification the tensor-parallel module is tested against.

    Returns:
        ``[*ids.shape, d]`` with ``d = projection.shape[0]``.
    """
    num_coords = codebooks.shape[0] if codebooks.dim() == 3 else coord_scale.shape[0]
    base = digit_base(vocab_size, num_coords)
    flat = ids.reshape(-1)
    coords = token_coordinates(flat, base, num_coords)
    u = torch.sigmoid(seed_from_codebooks(coords, codebooks, coord_scale, coord_offset))
    modes = separable_modes(u, mode_weights)
    return (modes @ projection.t()).reshape(*ids.shape, projection.shape[0])
