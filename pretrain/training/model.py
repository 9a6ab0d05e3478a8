"""Build the megatron-core GPT of a config: one backbone, three input embeddings.

``lev``, ``tied`` and ``untied`` differ only in the input table and whether the output
head shares it; the backbone (LLaMA-style: RMSNorm, SwiGLU, RoPE, no biases) is built
by the same code with the same RNG stream, so their backbone weights start identical.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from megatron.core import parallel_state as ps
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer.enums import AttnBackend
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_patches.lev_embedding import LEVEmbedding, lev_parameter_count
from megatron_patches.lev_injection import install_lev_embedding
from pretrain.config import Config, ConfigError

__all__ = [
    "ParamCounts",
    "build_model",
    "count_parameters",
    "layer_spec",
    "sum_sequence_parallel_grads",
    "transformer_config",
]

log = logging.getLogger(__name__)


def transformer_config(config: Config) -> TransformerConfig:
    """megatron-core ``TransformerConfig`` for the backbone in ``config``."""
    m, train = config.model, config.train
    on_cuda = torch.cuda.is_available()
    bf16 = train.precision == "bf16"
    recompute = {"none": {}, "selective": {"recompute_granularity": "selective"},
                 "full": {"recompute_granularity": "full", "recompute_method": "uniform",
                          "recompute_num_layers": 1}}[train.recompute]
    return TransformerConfig(
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        num_attention_heads=m.num_attention_heads,
        num_query_groups=m.num_query_groups,
        ffn_hidden_size=m.ffn_hidden_size,
        init_method_std=m.init_method_std,
        normalization="RMSNorm",
        layernorm_epsilon=m.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tensor_model_parallel_size=config.parallel.tensor_parallel,
        sequence_parallel=config.parallel.sequence_parallel,
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        # Build weights on the CPU from one global master so every TP size starts from
        # the same function; moving to the GPU afterwards is one copy.
        use_cpu_initialization=True,
        # Fused kernels (apex/TE) are not on CPU hosts; the local spec's fallbacks are.
        bias_activation_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        apply_rope_fusion=False,
        attention_backend=AttnBackend.auto if on_cuda else AttnBackend.local,
        **recompute,
    )


def layer_spec(config: Config) -> tuple[ModuleSpec, str]:
    """``model.layer_spec`` resolved: the module spec and its name (``local`` or
    ``transformer-engine``). ``auto``: Transformer Engine on a CUDA host where it imports.

    Raises:
        ConfigError: ``transformer-engine`` asked for where it cannot run.
    """
    wanted = config.model.layer_spec
    if wanted != "local" and torch.cuda.is_available():
        try:
            import transformer_engine  # noqa: F401
            from megatron.core.models.gpt.gpt_layer_specs import (
                get_gpt_layer_with_transformer_engine_spec,
            )
        except ImportError:
            pass
        else:
            return get_gpt_layer_with_transformer_engine_spec(), "transformer-engine"
    if wanted == "transformer-engine":
        raise ConfigError(
            "model.layer_spec=transformer-engine needs CUDA and an importable "
            "transformer_engine (pip install transformer-engine[pytorch]); this host has "
            f"CUDA={torch.cuda.is_available()}. Run where both are, or train a new model "
            "with model.layer_spec=local")
    return get_gpt_layer_local_spec(normalization="RMSNorm"), "local"


def build_model(config: Config, *, meta: bool = False) -> GPTModel:
    """The GPT of ``config`` with ``model.embedding`` = lev | tied | untied.

    Needs megatron-core ``parallel_state`` initialised (a world of 1 is fine).

    Args:
        config: the run's config.
        meta: allocate on the meta device (shapes and counts only, no memory, no init).
    """
    m = config.model
    tconfig = transformer_config(config)
    if meta:
        tconfig.perform_initialization = False
    spec, spec_name = layer_spec(config)
    if config.parallel.sequence_parallel and spec_name == "local":
        raise ConfigError(
            "parallel.sequence_parallel=true needs the transformer-engine layer spec (a CUDA "
            "host with transformer-engine installed: pip install -r requirements-gpu.txt); "
            "megatron-core's local-spec norms do not support it. Set "
            "parallel.sequence_parallel=false here."
        )
    log.info("layer spec: %s (%s)", spec_name,
             "CUDA + transformer-engine" if spec_name != "local" else "megatron-core local modules")
    device = torch.device("meta") if meta else torch.empty(0).device
    with device:
        model = GPTModel(
            config=tconfig,
            transformer_layer_spec=spec,
            vocab_size=m.vocab_size,
            max_sequence_length=m.seq_length,
            pre_process=True,
            post_process=True,
            parallel_output=True,  # logits stay vocab-parallel for the vocab-parallel CE
            share_embeddings_and_output_weights=m.embedding == "tied",
            position_embedding_type="rope",
            rotary_base=m.rotary_base,
        )
        if m.embedding == "lev":
            lev = config.lev
            module = install_lev_embedding(
                model, num_coords=lev.num_coords, seed_dim=lev.seed_dim,
                grid_size=lev.grid_size, num_modes=lev.num_modes,
                share_codebooks=lev.share_codebooks, init_seed=config.train.seed,
                knots=lev.knots, init_active_factors=lev.init_active_factors,
                seed_init_std=lev.seed_init_std, output_norm=lev.output_norm,
                aggregation=lev.aggregation, aggregation_hidden=lev.aggregation_hidden,
            )
            # The function's O(1)-scale inner weights (codebooks, spline factors) move at
            # lr_mult x lr; the projection and the MLP aggregation's hidden layer (ordinary
            # dense matrices) and the output gain (a norm weight at the table's scale) keep
            # the base lr.
            for name, p in module.named_parameters():
                if name not in ("projection", "aggregation_in", "output_gain"):
                    p.lr_mult = lev.lr_mult  # read by pretrain.training.optimizer.build_optimizer
    if config.parallel.sequence_parallel:
        sum_sequence_parallel_grads(model, ps.get_tensor_model_parallel_group())
    return model


def sum_sequence_parallel_grads(model: torch.nn.Module, tp_group) -> int:
    """Sum over the TP group the gradients of parameters marked ``sequence_parallel``.

    Under sequence parallelism each TP rank sees only its slice of the sequence, so the
    replicated norm weights get partial gradients. Megatron sums them in
    ``finalize_model_grads``; DeepSpeed knows nothing of it, so a gradient hook does it
    before DeepSpeed accumulates and reduces over data parallelism. Returns the count.
    """
    hooked = 0
    for p in model.parameters():
        if p.requires_grad and getattr(p, "sequence_parallel", False):
            p.register_hook(functools.partial(_all_reduced, group=tp_group))
            hooked += 1
    return hooked


def _all_reduced(grad: torch.Tensor, group) -> torch.Tensor:
    grad = grad.clone()  # the hook must not modify autograd's buffer in place
    torch.distributed.all_reduce(grad, group=group)
    return grad


@dataclass(frozen=True, slots=True)
class ParamCounts:
    """Global parameter counts of a model, by part."""

    total: int
    backbone: int
    input_embedding: int
    output_head: int
    lev: int


def count_parameters(model: GPTModel, tensor_parallel: int = 1) -> ParamCounts:
    """Global counts (TP-sharded parameters multiplied back to their full size).

    A tied table is counted once, as the input embedding; its head adds nothing.
    """
    def numel(p: torch.nn.Parameter) -> int:
        # ZeRO-3 leaves each rank an empty partition; ds_numel is the parameter's full size.
        size = getattr(p, "ds_numel", None) or p.numel()
        return size * (tensor_parallel if getattr(p, "tensor_model_parallel", False) else 1)

    table = model.embedding.word_embeddings
    input_params = {id(p): p for p in table.parameters()}
    head = model.output_layer.weight
    head_count = 0 if head is None or id(head) in input_params else numel(head)
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += numel(p)
    input_count = sum(numel(p) for p in input_params.values())
    lev = input_count if isinstance(table, LEVEmbedding) else 0
    return ParamCounts(total=total, backbone=total - input_count - head_count,
                       input_embedding=input_count, output_head=head_count, lev=lev)


def closed_form_lev_count(config: Config) -> int:
    """LEV parameters for ``config`` by LEV.md's formula."""
    lev = config.lev
    return lev_parameter_count(
        vocab_size=config.model.vocab_size, hidden_size=config.model.hidden_size,
        num_coords=lev.num_coords, seed_dim=lev.seed_dim, grid_size=lev.grid_size,
        num_modes=lev.num_modes, share_codebooks=lev.share_codebooks,
        output_norm=lev.output_norm, aggregation=lev.aggregation,
        aggregation_hidden=lev.aggregation_hidden,
    )
