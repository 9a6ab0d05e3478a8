"""Swap megatron-core GPTModel's input table for LEV, without forking GPTModel.

``GPTModel.embedding`` (a ``LanguageModelEmbedding``) keeps doing what it does around
the table (the [b, s, h] -> [s, b, h] transpose, sequence-parallel scatter, dropout);
only its ``word_embeddings`` child is replaced, with the same call contract.
"""

from __future__ import annotations

import logging

from megatron.core.models.gpt import GPTModel

from megatron_patches.lev_embedding import LEVEmbedding

__all__ = ["install_lev_embedding"]

log = logging.getLogger(__name__)


def install_lev_embedding(
    model: GPTModel,
    *,
    num_coords: int,
    seed_dim: int,
    grid_size: int,
    num_modes: int,
    share_codebooks: bool,
    init_seed: int,
    knots: str = "extended",
    init_active_factors: int = 2,
    seed_init_std: float = 1.5,
    output_norm: bool = False,
    aggregation: str = "linear",
    aggregation_hidden: int | None = None,
) -> LEVEmbedding:
    """Replace ``model.embedding.word_embeddings`` with a :class:`LEVEmbedding`.

    The model must have been built untied (``share_embeddings_and_output_weights=False``):
    LEV has no V x d table for the output head to share.

    Returns:
        The installed module.
    """
    if model.share_embeddings_and_output_weights:
        raise ValueError("LEV needs an untied output head; build the GPTModel with "
                         "share_embeddings_and_output_weights=False")
    table = model.embedding.word_embeddings
    lev = LEVEmbedding(
        model.config,
        vocab_size=model.vocab_size,
        num_coords=num_coords,
        seed_dim=seed_dim,
        grid_size=grid_size,
        num_modes=num_modes,
        share_codebooks=share_codebooks,
        knots=knots,
        init_active_factors=init_active_factors,
        seed_init_std=seed_init_std,
        output_norm=output_norm,
        aggregation=aggregation,
        aggregation_hidden=aggregation_hidden,
        init_seed=init_seed,
        reduce_scatter_embeddings=table.reduce_scatter_embeddings,
        tp_group=table.tp_group,
    )
    model.embedding.word_embeddings = lev
    log.debug("installed LEV input embedding: %s", lev.extra_repr())
    return lev
