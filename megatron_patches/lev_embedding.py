"""LEV as a tensor-parallel drop-in for megatron-core's ``word_embeddings``.

Contract kept from ``VocabParallelEmbedding``: ids ``[b, s]`` in, ``[b, s, d]`` out,
identical on every rank of the tensor-parallel group (or ``[s/tp, b, d]`` when the
owning ``LanguageModelEmbedding`` asks for sequence-parallel reduce-scatter).

Sharding (row-parallel pattern, LEV.md): codebooks are replicated; the modes ``W[:, :, r]``
and the matching columns of the projection ``P`` are split across TP ranks. The seed
enters the TP region through ``copy_to_tensor_model_parallel_region`` (identity forward,
all-reduce of the codebook gradient backward) and the partial projections leave it
through ``reduce_from`` (all-reduce) or ``reduce_scatter_to_sequence_parallel_region``.
With the MLP aggregation (``P @ silu(W @ mode)``), ``W``'s columns follow the modes (split
over ``R``) and ``P``'s columns follow the hidden units (split over ``h``): the partial
pre-activations of the distinct ids are all-reduced (``[n_unique, h]``, small), each rank
keeps its ``h / tp`` hidden units (``scatter_to_tensor_model_parallel_region``, whose
backward all-gathers), and the partial projections leave the TP region exactly as the
linear projection's do, so sequence parallelism and ``output_norm`` are unchanged.
The optional output gain (``output_norm``) is replicated like a norm weight and acts on the
full-width result; under sequence parallelism it is marked ``sequence_parallel`` so that
the model sums its partial gradients over the group.
"""

from __future__ import annotations

import math

import torch
from megatron.core.tensor_parallel.layers import set_tensor_model_parallel_attributes
from megatron.core.tensor_parallel.mappings import (
    copy_to_tensor_model_parallel_region,
    reduce_from_tensor_model_parallel_region,
    reduce_scatter_to_sequence_parallel_region,
    scatter_to_tensor_model_parallel_region,
)
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig
from torch import Tensor

from megatron_patches.lev_math import (
    AGGREGATIONS,
    SILU_GAUSSIAN_VARIANCE,
    aggregation_activation,
    bspline_centres,
    digit_base,
    rms_normalise,
    seed_from_codebooks,
    separable_modes,
    token_coordinates,
)

__all__ = ["LEVEmbedding", "TokenIdOutOfRangeError", "aggregation_width", "lev_parameter_count"]

# Init (LEV.md "Initialisation"): a mode that is a product of s random factors has a
# log-normal spread of e^±9 at s=16, and a mode whose factors all start near 1 is the
# same for every token. So each mode starts as the product of `init_active_factors`
# random zero-mean univariate splines; its other factors start as the constant 1 (with
# the extended knots the basis is a partition of unity on [0, 1]) and learn from there.
# E_u[sum_k phi_k(u)^2] for the uniform quadratic B-spline basis (integral = 0.55):
# scales the active spline weights so each active factor has unit second moment.
_BASIS_SQUARED_MASS = 0.55


class TokenIdOutOfRangeError(ValueError):
    """A token id outside ``[0, vocab_size)`` reached the embedding."""


def aggregation_width(aggregation: str, num_modes: int, aggregation_hidden: int | None) -> int:
    """Inputs of the last linear map into the model width: ``R`` (linear) or ``h`` (mlp,
    ``aggregation_hidden``, default ``R``)."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"lev.aggregation={aggregation!r}; use one of {AGGREGATIONS}")
    if aggregation == "linear":
        return num_modes
    return num_modes if aggregation_hidden is None else aggregation_hidden


def lev_parameter_count(
    *, vocab_size: int, hidden_size: int, num_coords: int, seed_dim: int, grid_size: int,
    num_modes: int, share_codebooks: bool, output_norm: bool = False,
    aggregation: str = "linear", aggregation_hidden: int | None = None,
) -> int:
    """Closed-form LEV parameter count (LEV.md: ``K*b*s + s*G*R + R*d``).

    A shared codebook is ``b*s`` plus a per-coordinate scale and offset (``2*K*s``); the
    MLP aggregation replaces ``R*d`` by ``R*h + h*d``; the output normalisation adds its
    per-channel gain (``d``).
    """
    base = digit_base(vocab_size, num_coords)
    codebook = base * seed_dim + 2 * num_coords * seed_dim if share_codebooks else (
        num_coords * base * seed_dim
    )
    width = aggregation_width(aggregation, num_modes, aggregation_hidden)
    hidden_layer = num_modes * width if aggregation == "mlp" else 0
    gain = hidden_size if output_norm else 0
    return (codebook + seed_dim * grid_size * num_modes + hidden_layer + width * hidden_size
            + gain)


class LEVEmbedding(MegatronModule):
    """Learned embedding vectorization, sharded over the tensor-parallel group.

    Args:
        config: the backbone's ``TransformerConfig`` (hidden size, dtype, init std,
            device placement).
        vocab_size: padded vocabulary ``V``; ids must lie in ``[0, V)``.
        num_coords: digits per id ``K``.
        seed_dim: seed dimension ``s``.
        grid_size: B-spline knots ``G``.
        num_modes: separable modes ``R`` (split across TP ranks).
        share_codebooks: one codebook for all digits plus per-digit scale and offset.
        knots: B-spline layout, ``extended`` (partition of unity on [0, 1]) or
            ``interior`` (:func:`megatron_patches.lev_math.bspline_centres`).
        init_active_factors: random (non-constant) factors per mode at init.
        seed_init_std: std of the seed ``z`` before the sigmoid at init (1.5 spreads
            ``u`` over about (0.05, 0.95) without saturating).
        output_norm: RMS-normalise each token's embedding and scale it by a learned
            per-channel gain that starts at ``init_method_std``, so every token enters the
            model at a tied table's init scale whatever its modes' magnitude.
        aggregation: ``linear`` (``P @ mode``) or ``mlp`` (``P @ silu(W @ mode)``, hidden
            width ``aggregation_hidden``; split over TP as the module docstring says).
        aggregation_hidden: the MLP's hidden width ``h`` (``None``: ``num_modes``); only
            with ``aggregation="mlp"``.
        init_seed: seed of the LEV init; the global weights depend only on it, so any
            TP size starts from the same function.
        reduce_scatter_embeddings: return ``[s/tp, b, d]`` reduce-scattered along the
            sequence (sequence parallelism), as ``VocabParallelEmbedding`` does.
        tp_group: tensor-parallel process group (``None``: single rank).
    """

    def __init__(
        self,
        config: TransformerConfig,
        *,
        vocab_size: int,
        num_coords: int,
        seed_dim: int,
        grid_size: int,
        num_modes: int,
        share_codebooks: bool = False,
        knots: str = "extended",
        init_active_factors: int = 2,
        seed_init_std: float = 1.5,
        output_norm: bool = False,
        aggregation: str = "linear",
        aggregation_hidden: int | None = None,
        init_seed: int = 1234,
        reduce_scatter_embeddings: bool = False,
        tp_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        super().__init__(config=config)
        self.tp_group = tp_group
        tp_size = self._tp_size = tp_group.size() if tp_group is not None else 1
        tp_rank = tp_group.rank() if tp_group is not None else 0
        if num_modes % tp_size:
            raise ValueError(
                f"lev.num_modes={num_modes} is not divisible by tensor_parallel={tp_size}; "
                f"use a multiple of {tp_size}"
            )
        if aggregation == "linear" and aggregation_hidden is not None:
            raise ValueError(f"lev.aggregation_hidden={aggregation_hidden} needs "
                             f"lev.aggregation=mlp; drop it or set lev.aggregation=mlp")
        width = aggregation_width(aggregation, num_modes, aggregation_hidden)
        if aggregation == "mlp" and (width < 2 or width % tp_size):
            raise ValueError(
                f"lev.aggregation_hidden={width} must be >= 2 and divisible by "
                f"tensor_parallel={tp_size}; use a multiple of {max(2, tp_size)}")
        self.aggregation = aggregation
        self.vocab_size = vocab_size
        self.num_coords = num_coords
        self.base = digit_base(vocab_size, num_coords)
        self.num_modes = num_modes
        self.reduce_scatter_embeddings = reduce_scatter_embeddings
        self.knots = knots
        bspline_centres(grid_size, knots)  # validates the layout before any weight exists
        self._init_seed = init_seed
        self._init_active_factors = init_active_factors
        self._seed_init_std = seed_init_std

        local_modes = num_modes // tp_size
        hidden = config.hidden_size
        device = self._param_device(config)
        dtype = config.params_dtype

        def param(*shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.empty(*shape, device=device, dtype=dtype))

        if share_codebooks:
            self.codebooks = param(self.base, seed_dim)
            self.coord_scale = param(num_coords, seed_dim)
            self.coord_offset = param(num_coords, seed_dim)
        else:
            self.codebooks = param(num_coords, self.base, seed_dim)
            self.coord_scale = self.coord_offset = None
        self.mode_weights = param(seed_dim, grid_size, local_modes)
        if aggregation == "mlp":
            self.aggregation_in = param(width, local_modes)
            set_tensor_model_parallel_attributes(self.aggregation_in, True, 1, 1)
        else:
            self.register_parameter("aggregation_in", None)
        self.projection = param(hidden, width // tp_size)
        if output_norm:
            # Replicated over TP like a norm weight; under sequence parallelism each rank sees
            # only its slice of the sequence, so the model sums its gradient over the group.
            self.output_gain = param(hidden)
            self.output_gain.sequence_parallel = reduce_scatter_embeddings
        else:
            self.register_parameter("output_gain", None)
        set_tensor_model_parallel_attributes(self.mode_weights, True, 2, 1)
        set_tensor_model_parallel_attributes(self.projection, True, 1, 1)
        # Multiplicative factors start at 1 (inactive spline factors, digit scales): weight
        # decay would pull every product towards 0, so they are exempt, like norm gains.
        for p in (self.mode_weights, self.coord_scale):
            if p is not None:
                p.no_weight_decay = True

        if config.perform_initialization and device != torch.device("meta"):
            self._initialize(seed_dim, grid_size, hidden, tp_rank, local_modes, width)

    @staticmethod
    def _param_device(config: TransformerConfig) -> torch.device:
        default = torch.empty(0).device  # honours a surrounding `with torch.device(...)`
        if default.type == "meta" or config.use_cpu_initialization or not torch.cuda.is_available():
            return default
        return torch.device("cuda", torch.cuda.current_device())

    @torch.no_grad()
    def _initialize(self, seed_dim: int, grid_size: int, hidden: int, tp_rank: int,
                    local_modes: int, width: int) -> None:
        """Initialise the *global* weights from ``init_seed`` and keep this rank's slice."""
        gen = torch.Generator().manual_seed(self._init_seed)
        std = self.config.init_method_std
        # Summing K rows of std seed_init_std/sqrt(K) gives a seed of std seed_init_std.
        codebooks = torch.randn(self.codebooks.shape, generator=gen)
        codebooks *= self._seed_init_std / math.sqrt(self.num_coords)
        if self.coord_scale is not None:
            # Distinct random scales per digit break the swapped-digit symmetry.
            self.coord_scale.copy_(torch.randn(self.coord_scale.shape, generator=gen))
            self.coord_offset.zero_()
        self.codebooks.copy_(codebooks)

        modes = torch.ones(seed_dim, grid_size, self.num_modes)
        active = min(self._init_active_factors, seed_dim)
        for r in range(self.num_modes):
            dims = torch.randperm(seed_dim, generator=gen)[:active]
            modes[dims, :, r] = torch.randn(active, grid_size, generator=gen) / math.sqrt(
                _BASIS_SQUARED_MASS
            )
        shard = slice(tp_rank * local_modes, (tp_rank + 1) * local_modes)
        self.mode_weights.copy_(modes[:, :, shard])
        if self.aggregation_in is None:
            # Each mode has unit second moment, so P ~ N(0, std^2 / R) gives per-dim std ~ std.
            projection = torch.randn(hidden, self.num_modes, generator=gen) * (
                std / math.sqrt(self.num_modes)
            )
            self.projection.copy_(projection[:, shard])
        else:
            self._initialize_mlp(gen, hidden, width, tp_rank, shard)
        if self.output_gain is not None:
            self.output_gain.fill_(std)  # per-token RMS of a tied table at init

    @torch.no_grad()
    def _initialize_mlp(self, gen: torch.Generator, hidden: int, width: int, tp_rank: int,
                        mode_shard: slice) -> None:
        """``W ~ N(0, 1/R)``: unit-second-moment modes give unit-variance pre-activations,
        where SiLU is neither linear nor saturated. ``P``'s rows are centred (each sums to
        0 over the hidden units), so the activations' common mean (``E[silu] ~ 0.21``, the
        same sign for every token) maps to nothing instead of adding one shared direction to
        every embedding; ``P ~ N(0, std^2 / (h Var[silu(z)]))`` then gives the centred
        activations the linear projection's per-dim std ``init_method_std``."""
        std = self.config.init_method_std
        hidden_weight = torch.randn(width, self.num_modes, generator=gen) / math.sqrt(
            self.num_modes)
        projection = torch.randn(hidden, width, generator=gen)
        projection -= projection.mean(dim=1, keepdim=True)
        projection *= std / math.sqrt(width * SILU_GAUSSIAN_VARIANCE)
        local = self.projection.shape[1]
        self.aggregation_in.copy_(hidden_weight[:, mode_shard])
        self.projection.copy_(projection[:, tp_rank * local:(tp_rank + 1) * local])

    def extra_repr(self) -> str:
        return (
            f"vocab_size={self.vocab_size}, num_coords={self.num_coords}, base={self.base}, "
            f"num_modes={self.num_modes} (local {self.mode_weights.shape[-1]}), "
            f"knots={self.knots}, aggregation={self.aggregation}"
            + (f" (hidden {self.aggregation_in.shape[0]})" if self.aggregation_in is not None
               else "")
            + f", output_norm={self.output_gain is not None}, "
            f"reduce_scatter={self.reduce_scatter_embeddings}"
        )

    def forward(self, input_ids: Tensor) -> Tensor:
        """Embed ``input_ids`` ``[b, s]`` -> ``[b, s, d]`` (or ``[s/tp, b, d]``)."""
        # LEV is evaluated once per distinct id; the sort also exposes min/max for free.
        unique_ids, inverse = torch.unique(input_ids, sorted=True, return_inverse=True)
        self._check_range(input_ids, unique_ids)

        coords = token_coordinates(unique_ids, self.base, self.num_coords)
        scale = self.coord_scale.float() if self.coord_scale is not None else None
        offset = self.coord_offset.float() if self.coord_offset is not None else None
        seed = seed_from_codebooks(coords, self.codebooks.float(), scale, offset)
        if self._tp_size > 1:
            seed = copy_to_tensor_model_parallel_region(seed, group=self.tp_group)
        modes = separable_modes(torch.sigmoid(seed), self.mode_weights.float(), self.knots)
        partial = self._aggregate(modes)  # [n_unique, d], this rank's share

        if self._tp_size == 1:
            out = self._normalise(partial)[inverse]
            return (out.transpose(0, 1).contiguous() if self.reduce_scatter_embeddings
                    else out).to(self.config.params_dtype)
        if self.reduce_scatter_embeddings:
            # Megatron's layout under sequence parallelism: [b, s, h] -> [s, b, h], split s.
            partial = partial[inverse].transpose(0, 1).contiguous()
            out = reduce_scatter_to_sequence_parallel_region(partial, group=self.tp_group)
            return self._normalise(out).to(self.config.params_dtype)
        # All-reduce the distinct rows only (fewer bytes than every position), then expand.
        embeddings = reduce_from_tensor_model_parallel_region(partial, group=self.tp_group)
        return self._normalise(embeddings).to(self.config.params_dtype)[inverse]

    def _aggregate(self, modes: Tensor) -> Tensor:
        """This rank's partial embeddings from its modes (summed over TP by the caller)."""
        if self.aggregation_in is None:
            return modes @ self.projection.float().t()
        pre = modes @ self.aggregation_in.float().t()  # [n_unique, h]: this rank's modes' part
        if self._tp_size > 1:
            # The nonlinearity needs every mode's contribution; then each rank keeps the
            # hidden units whose columns of P it holds (backward: all-gather their gradient).
            pre = reduce_from_tensor_model_parallel_region(pre, group=self.tp_group)
            pre = scatter_to_tensor_model_parallel_region(pre, group=self.tp_group)
        return aggregation_activation(pre) @ self.projection.float().t()

    def _normalise(self, embeddings: Tensor) -> Tensor:
        """RMS-normalise the full-width fp32 embeddings (``output_norm``), else as they are."""
        if self.output_gain is None:
            return embeddings
        return rms_normalise(embeddings, self.output_gain.float())

    def _check_range(self, input_ids: Tensor, unique_ids: Tensor) -> None:
        low, high = unique_ids[[0, -1]].tolist()  # one device-to-host copy
        if low >= 0 and high < self.vocab_size:
            return
        bad = low if low < 0 else high
        where = (input_ids == bad).nonzero()[0].tolist()
        raise TokenIdOutOfRangeError(
            f"token id {bad} at batch position {where} is outside the LEV vocabulary "
            f"[0, {self.vocab_size}); the data's tokenizer does not match "
            f"model.vocab_size={self.vocab_size} (raise model.vocab_size or re-shard the data)"
        )
