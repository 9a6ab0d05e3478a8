"""The LEV function as pure tensor math: token id -> embedding, no parallelism.

LEV (Leviathan, arXiv 2601.22040) computes a token's input embedding from its index:
digits of the id pick codebook rows whose sum is a seed, the squashed seed feeds
``R`` rank-1 separable functions built from quadratic B-splines, and an aggregation
(a projection, or a one-hidden-layer MLP) maps those modes into the model width. See
``docs/LEV.md``.

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
    "KNOT_LAYOUTS",
    "bspline_centres",
    "quadratic_bspline_basis",
    "signed_log_product",
    "separable_modes",
    "seed_from_codebooks",
    "rms_normalise",
    "AGGREGATIONS",
    "SILU_GAUSSIAN_VARIANCE",
    "aggregation_activation",
    "aggregate_modes",
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


KNOT_LAYOUTS = ("extended", "interior")


def bspline_centres(grid_size: int, knots: str = "extended", *, device=None,
                    dtype=None) -> tuple[Tensor, float]:
    """Centres of the ``grid_size`` quadratic B-splines on [0, 1] and their spacing ``h``.

    ``interior``: centres ``k / (G - 1)`` from 0 to 1 (the first LEV implementation). The
    splines centred outside [0, 1] are missing, so the basis sums to 1 only on
    ``[1.5h, 1 - 1.5h]`` and drops to 0.5 at the ends: a factor that should be the
    constant 1 falls towards the ends, where sigmoid seeds often are.

    ``extended``: centres ``(k - 0.5) / (G - 2)``, from ``-h/2`` to ``1 + h/2``. Every
    point of [0, 1] then lies within ``1.5h`` of every centre it needs, so the basis is a
    partition of unity on the whole interval (needs ``G >= 3``).
    """
    if knots == "interior":
        h = 1.0 / (grid_size - 1)
        offset = 0.0
    elif knots == "extended":
        if grid_size < 3:
            raise ValueError(f"extended knots need grid_size >= 3, got {grid_size}")
        h = 1.0 / (grid_size - 2)
        offset = -0.5 * h
    else:
        raise ValueError(f"knots={knots!r}; use one of {KNOT_LAYOUTS}")
    centres = offset + h * torch.arange(grid_size, device=device, dtype=dtype)
    return centres, h


def quadratic_bspline_basis(u: Tensor, grid_size: int, knots: str = "extended") -> Tensor:
    """Quadratic B-spline values at ``grid_size`` uniform centres (:func:`bspline_centres`).

    Args:
        u: values in (0, 1), any shape.
        grid_size: number of basis functions ``G``.
        knots: ``extended`` (a partition of unity on [0, 1]) or ``interior``.

    Returns:
        ``[*u.shape, G]``; at most three entries per value are non-zero.
    """
    centres, h = bspline_centres(grid_size, knots, device=u.device, dtype=u.dtype)
    t = (u.unsqueeze(-1) - centres).abs() / h
    inner = 0.75 - t * t
    outer = 0.5 * (1.5 - t).clamp(min=0.0) ** 2
    return torch.where(t < 0.5, inner, outer)


class _SignedLogProduct(torch.autograd.Function):
    """Product over dim 0 computed as the product of the signs times ``exp(sum log|x|)``.

    Multiplying 16+ factors directly can overflow or underflow fp32 in the partial
    products even when the result is representable; a sum of logs cannot. The reduced
    dim is 0 so that factors ``[s, n, r]`` are ``s`` contiguous slices and every pass is
    a streaming elementwise op. Backward: :func:`_grad_factors`.
    """

    @staticmethod
    def forward(ctx, factors: Tensor) -> Tensor:  # factors: [s, ...]
        log_abs, log_total, sign = _log_product(factors)
        ctx.save_for_backward(factors, log_abs, log_total, sign)
        return sign * log_total.exp()

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tensor:
        factors, log_abs, log_total, sign = ctx.saved_tensors
        return _grad_factors(factors, log_abs, log_total, sign, grad_out)


def _log_product(factors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``log|x|``, its sum over dim 0 and the product's sign (a product of +-1, 0 at a zero)."""
    log_abs = factors.abs().log_()
    return log_abs, log_abs.sum(dim=0), factors.sign().prod(dim=0)


def _grad_factors(factors: Tensor, log_abs: Tensor, log_total: Tensor, sign: Tensor,
                  grad_out: Tensor) -> Tensor:
    """``grad_out * prod_{j != m} x_j`` for every ``m`` along dim 0, no partial products.

    ``exp(sum_j log|x_j| - log|x_m|)`` times ``sign(x_m) * sign`` (a difference of log-sums:
    nothing divides by a factor). Where a factor is exactly zero (or not finite) that
    difference is ``inf - inf``; only then the exact prefix/suffix log-scan is used, which
    never subtracts.
    """
    if not torch.isfinite(log_total).all():
        log_others = _exclusive_scan(log_abs, torch.cumsum, 0.0)
        signs = torch.where(factors < 0, -1.0, 1.0).to(factors.dtype)
        others = _exclusive_scan(signs, torch.cumprod, 1.0).mul_(log_others.exp_())
        return others.mul_(grad_out.unsqueeze(0))
    others = torch.sub(log_total.unsqueeze(0), log_abs).exp_()  # |prod_{j != m} x_j|
    # sign(prod_{j != m} x_j) = sign(x_m) * sign; fold sign into grad_out ([n, r], cheap).
    return others.copysign_(factors).mul_((grad_out * sign).unsqueeze(0))


def _exclusive_scan(x: Tensor, scan, identity: float) -> Tensor:
    """``out[m] = scan over x[j] for all j != m`` (dim 0), from two one-sided scans."""
    pad = torch.full_like(x[:1], identity)
    before = torch.cat([pad, scan(x[:-1], dim=0)], dim=0)
    after = torch.cat([scan(x[1:].flip(0), dim=0).flip(0), pad], dim=0)
    return before + after if scan is torch.cumsum else before * after


def signed_log_product(factors: Tensor) -> Tensor:
    """Overflow-safe product of ``factors`` over dim 1 (``[n, s, r] -> [n, r]``)."""
    return _SignedLogProduct.apply(factors.movedim(1, 0))


# Rows of ids per chunk on CPU: keeps each [s, rows, R] temporary near 4 MiB, so the ~10
# elementwise passes run in cache instead of DRAM and reuse heap memory instead of fresh
# page-faulting allocations (5-10x faster than one [s, n, R] tensor at n ~ 1000).
_CPU_CHUNK_ELEMENTS = 2**20


class _SeparableModes(torch.autograd.Function):
    """``prod_m (basis[:, m] @ W[m])`` over seed dims, chunked over ids, recomputed backward.

    Nothing of size ``[s, n, R]`` is kept between forward and backward: backward recomputes
    each chunk's factors (one small batched matmul) instead, so LEV's activation memory is
    ``O(n * R)``, not ``O(s * n * R)``.
    """

    @staticmethod
    def forward(ctx, basis: Tensor, mode_weights: Tensor) -> Tensor:  # [n, s, G], [s, G, R]
        basis_s = basis.transpose(0, 1).contiguous()  # [s, n, G]
        n, num_modes = basis_s.shape[1], mode_weights.shape[2]
        log_total = basis_s.new_empty(n, num_modes)
        sign = basis_s.new_empty(n, num_modes)
        for rows in _chunks(basis_s, num_modes):
            _, log_total[rows], sign[rows] = _log_product(torch.bmm(basis_s[:, rows], mode_weights))
        ctx.save_for_backward(basis_s, mode_weights, log_total, sign)
        return sign * log_total.exp()

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None]:
        basis_s, mode_weights, log_total, sign = ctx.saved_tensors
        grad_basis = torch.empty_like(basis_s) if ctx.needs_input_grad[0] else None
        grad_weights = torch.zeros_like(mode_weights) if ctx.needs_input_grad[1] else None
        weights_t = mode_weights.transpose(1, 2)
        for rows in _chunks(basis_s, mode_weights.shape[2]):
            part = basis_s[:, rows]
            factors = torch.bmm(part, mode_weights)  # recomputed: [s, rows, R]
            log_abs = factors.abs().log_()
            grad_factors = _grad_factors(factors, log_abs, log_total[rows], sign[rows],
                                         grad_out[rows])
            if grad_basis is not None:
                torch.bmm(grad_factors, weights_t, out=grad_basis[:, rows])
            if grad_weights is not None:
                grad_weights.baddbmm_(part.transpose(1, 2), grad_factors)
        return (grad_basis.transpose(0, 1) if grad_basis is not None else None), grad_weights


def _chunks(basis_s: Tensor, num_modes: int) -> list[slice]:
    """Row slices of the ids; a single slice off the CPU (GPUs want large kernels)."""
    n, seed_dim = basis_s.shape[1], basis_s.shape[0]
    step = n if basis_s.device.type != "cpu" else max(1, _CPU_CHUNK_ELEMENTS // (seed_dim * num_modes))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def separable_modes(u: Tensor, mode_weights: Tensor, knots: str = "extended") -> Tensor:
    """Rank-1 separable modes ``mode_r = prod_m sum_k W[m, k, r] * phi_k(u_m)``.

    The product is overflow-safe (log-magnitude sum plus sign parity, LEV.md "Numerics").

    Args:
        u: squashed seeds ``[n, s]``.
        mode_weights: ``W`` of shape ``[s, G, R]`` (``R`` may be a tensor-parallel shard).
        knots: the B-spline layout (:func:`bspline_centres`).

    Returns:
        ``[n, R]``.
    """
    basis = quadratic_bspline_basis(u, mode_weights.shape[1], knots)  # [n, s, G]
    return _SeparableModes.apply(basis, mode_weights)


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


# Far below the squared RMS of any embedding worth keeping (a tied table starts at 0.02**2).
_RMS_EPS = 1e-12


def rms_normalise(embeddings: Tensor, gain: Tensor) -> Tensor:
    """``x / rms(x) * gain`` over the last dim: each row scaled to unit RMS (no centring),
    then multiplied per channel by ``gain``."""
    return torch.nn.functional.rms_norm(embeddings, (embeddings.shape[-1],), gain, _RMS_EPS)


#: How the modes reach the model width: ``linear`` (``e = P @ mode``) or ``mlp``
#: (``e = P @ silu(W @ mode)``, one hidden layer, no biases, like the backbone's layers).
AGGREGATIONS = ("linear", "mlp")

#: ``Var[silu(z)]`` for ``z ~ N(0, 1)`` (quadrature: ``E[silu] = 0.20662``,
#: ``E[silu^2] = 0.35578``). The MLP's init divides by it so that unit-variance
#: pre-activations give the output the linear projection's scale.
SILU_GAUSSIAN_VARIANCE = 0.31308


def aggregation_activation(hidden: Tensor) -> Tensor:
    """The MLP aggregation's nonlinearity: SiLU.

    SiLU because it is the backbone's own (SwiGLU), smooth everywhere (no dead units at
    init, exact fp64 gradcheck), and its ``Var[silu(sigma z)] / sigma^2`` stays within
    0.26-0.35 for ``sigma`` in 0.3-3, so tokens whose modes are small or large keep the
    linear projection's relative scales at init.
    """
    return torch.nn.functional.silu(hidden)


def aggregate_modes(modes: Tensor, projection: Tensor, hidden_weight: Tensor | None = None) -> Tensor:
    """Modes ``[n, R]`` to embeddings ``[n, d]``.

    Without ``hidden_weight`` (``linear``): ``P @ mode`` with ``P`` ``[d, R]``. With it
    (``mlp``, ``hidden_weight`` ``[h, R]``, ``projection`` ``[d, h]``):
    ``P @ silu(W @ mode)``. Either way the last step is linear, so the embeddings span at
    most ``R`` (linear) or ``h`` (mlp) directions of the model width.
    """
    if hidden_weight is None:
        return modes @ projection.t()
    return aggregation_activation(modes @ hidden_weight.t()) @ projection.t()


def lev_embed(
    ids: Tensor,
    *,
    vocab_size: int,
    codebooks: Tensor,
    mode_weights: Tensor,
    projection: Tensor,
    coord_scale: Tensor | None = None,
    coord_offset: Tensor | None = None,
    output_gain: Tensor | None = None,
    knots: str = "extended",
    aggregation_in: Tensor | None = None,
) -> Tensor:
    """Reference single-device LEV: embeddings for ``ids`` evaluated per position.

    Computes in the dtype of the weights given (fp32 or fp64 for gradcheck). This is
    the specification the tensor-parallel module is tested against. With ``aggregation_in``
    (``[h, R]``) the modes pass through the MLP aggregation, ``projection`` then being
    ``[d, h]`` (:func:`aggregate_modes`). With ``output_gain`` each embedding is
    RMS-normalised and scaled by it (``lev.output_norm``).

    Returns:
        ``[*ids.shape, d]`` with ``d = projection.shape[0]``.
    """
    num_coords = codebooks.shape[0] if codebooks.dim() == 3 else coord_scale.shape[0]
    base = digit_base(vocab_size, num_coords)
    flat = ids.reshape(-1)
    coords = token_coordinates(flat, base, num_coords)
    u = torch.sigmoid(seed_from_codebooks(coords, codebooks, coord_scale, coord_offset))
    modes = separable_modes(u, mode_weights, knots)
    embeddings = aggregate_modes(modes, projection, aggregation_in)
    if output_gain is not None:
        embeddings = rms_normalise(embeddings, output_gain)
    return embeddings.reshape(*ids.shape, projection.shape[0])
