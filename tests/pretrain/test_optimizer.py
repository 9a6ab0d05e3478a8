"""Weight decay: matrices only; never norms, 1-D parameters or LEV's multiplicative factors."""

from pretrain.config import OptimizerConfig
from pretrain.optimizer import build_optimizer
from tests.workers.lev_cases import build_lev


def test_lev_factors_and_scales_are_not_decayed_but_codebooks_and_projection_are():
    lev = build_lev(share_codebooks=True)
    groups = build_optimizer(lev, OptimizerConfig(weight_decay=0.1)).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(lev.projection) in decayed and id(lev.codebooks) in decayed
    assert id(lev.mode_weights) not in decayed and id(lev.coord_scale) not in decayed
    assert id(lev.coord_offset) in decayed  # 2-D, additive: decays towards 0 like a matrix


def test_the_step_count_is_kept_in_every_param_group_for_elastic_zero_checkpoints():
    lev = build_lev()
    optimizer = build_optimizer(lev, OptimizerConfig())
    lev(__import__("torch").tensor([[1, 2]])).sum().backward()
    optimizer.step()
    optimizer.step()
    assert [g["step"] for g in optimizer.param_groups] == [2, 2]
