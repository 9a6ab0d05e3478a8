"""Weight decay: matrices only; never norms, 1-D parameters or LEV's multiplicative factors."""

import pytest
import torch

from pretrain.config import OptimizerConfig
from pretrain.training.optimizer import build_optimizer
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


def test_an_lr_multiplier_gets_its_own_group_with_the_decay_per_step_unchanged():
    lev = build_lev()
    for p in (lev.codebooks, lev.mode_weights):
        p.lr_mult = 10.0
    groups = build_optimizer(lev, OptimizerConfig(lr=1e-3, weight_decay=0.1)).param_groups
    assert groups[0]["lr"] == 1e-3 and groups[0]["weight_decay"] == 0.1  # the schedule's group
    group_of = {id(p): g for g in groups for p in g["params"]}
    fast = group_of[id(lev.codebooks)]
    assert fast["lr"] == 1e-2 and fast["weight_decay"] * fast["lr"] == 0.1 * 1e-3
    assert group_of[id(lev.mode_weights)]["lr"] == 1e-2  # not decayed, also fast
    assert group_of[id(lev.projection)]["lr"] == 1e-3


def test_the_model_builder_speeds_up_lev_inner_weights_but_not_its_projection_or_gain():
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import json\n"
        "from pretrain.config import load_config\n"
        "from pretrain.runtime.distributed import destroy_distributed, init_distributed\n"
        "from pretrain.training.model import build_model\n"
        "c = load_config('pretrain/configs/tiny_lev.yaml',\n"
        "                ['lev.lr_mult=30', 'lev.output_norm=true'])\n"
        "init_distributed(1, 1)\n"
        "lev = build_model(c).embedding.word_embeddings\n"
        "print(json.dumps({n: getattr(p, 'lr_mult', None) for n, p in lev.named_parameters()}))\n"
        "destroy_distributed()\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    mults = json.loads(out.stdout.strip().splitlines()[-1])
    assert mults == {"codebooks": 30.0, "mode_weights": 30.0, "projection": None,
                     "output_gain": None}


def test_a_cosine_lr_multiplier_decays_from_lr_mult_to_one_with_the_schedule():
    from pretrain.config import OptimizerConfig
    from pretrain.training.schedule import lr_mult_at

    opt = OptimizerConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10)
    mult = [lr_mult_at(s, 30.0, "cosine", opt, 110) for s in (0, 9, 60, 110, 200)]
    assert mult[:2] == [30.0, 30.0]  # warm-up keeps the full multiplier
    assert mult[2] == pytest.approx(15.5)  # halfway through the decay
    assert mult[3:] == [1.0, 1.0]
    assert [lr_mult_at(s, 30.0, "constant", opt, 110) for s in (0, 110)] == [30.0, 30.0]


def test_the_scheduler_moves_lev_groups_with_their_multiplier_and_the_rest_with_the_schedule():
    from pretrain.training.schedule import lr_at, lr_factors, lr_mult_at

    opt = OptimizerConfig(lr=1e-3, min_lr=1e-4, warmup_steps=2)
    lev = build_lev()
    for p in (lev.codebooks, lev.mode_weights):
        p.lr_mult = 30.0  # what the model builder sets from lev.lr_mult
    optimizer = build_optimizer(lev, opt)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factors(optimizer, opt, "cosine", 12))
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    base = lr_at(7, opt, 12)
    assert group_of[id(lev.projection)]["lr"] == pytest.approx(base)
    assert group_of[id(lev.codebooks)]["lr"] == pytest.approx(
        base * lr_mult_at(7, 30.0, "cosine", opt, 12))
    assert 1.0 < lr_mult_at(7, 30.0, "cosine", opt, 12) < 30.0
