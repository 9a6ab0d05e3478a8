"""Shared small LEV set-ups for tests and their torchrun workers."""

import torch
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_patches.lev_embedding import LEVEmbedding

VOCAB, HIDDEN = 997, 24
LEV_SHAPE = dict(num_coords=2, seed_dim=4, grid_size=6, num_modes=8)
# A hidden width unlike num_modes and the width, so a split along the wrong dim cannot pass.
MLP = dict(aggregation="mlp", aggregation_hidden=6)

_ids = torch.Generator().manual_seed(7)
TP_CASE = {
    # Repeated ids on purpose: distinct-id evaluation must scatter gradients back.
    "ids": torch.randint(0, VOCAB, (3, 8), generator=_ids),
}


def tiny_transformer_config(**kw) -> TransformerConfig:
    """A TransformerConfig that only LEV reads (width, dtype, init std, CPU init)."""
    return TransformerConfig(num_layers=1, hidden_size=HIDDEN, num_attention_heads=4,
                             use_cpu_initialization=True, init_method_std=0.02, **kw)


def build_lev(tp_group=None, reduce_scatter=False, **kw) -> LEVEmbedding:
    """The test LEV (global weights depend only on init_seed, not on TP size)."""
    shape = {**LEV_SHAPE, **kw}
    return LEVEmbedding(tiny_transformer_config(), vocab_size=VOCAB, init_seed=3,
                        reduce_scatter_embeddings=reduce_scatter, tp_group=tp_group, **shape)


def upstream_grad(shape) -> torch.Tensor:
    """A fixed upstream gradient ``[b, s, d]``."""
    return torch.randn(*shape, HIDDEN, generator=torch.Generator().manual_seed(11))
