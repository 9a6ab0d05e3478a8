"""``lev.aggregation=mlp`` in the pipeline: config checks, the params CLI, the model
builder's lr/decay groups, and resuming checkpoints saved before the fields existed."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pretrain.checkpoint.manager import CheckpointMismatchError, check_compatible
from pretrain.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
TINY = "pretrain/configs/tiny_lev.yaml"
NEW_KEYS = ("lev.aggregation", "lev.aggregation_hidden")


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1",
                PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


# --- config ----------------------------------------------------------------------------

def test_an_unknown_aggregation_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"lev\.aggregation='deep'; use one of "
                                          r"\['linear', 'mlp'\]"):
        load_config(TINY, ["lev.aggregation=deep"])


def test_a_hidden_width_without_the_mlp_aggregation_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"lev\.aggregation_hidden=128 applies only to "
                                          r"lev\.aggregation=mlp; remove it or set "
                                          r"lev\.aggregation=mlp"):
        load_config(TINY, ["lev.aggregation_hidden=128"])


@pytest.mark.parametrize("hidden", [1, 0, -4])
def test_a_hidden_width_below_two_is_refused(hidden):
    with pytest.raises(ConfigError, match=rf"lev\.aggregation_hidden={hidden} must be >= 2"):
        load_config(TINY, ["lev.aggregation=mlp", f"lev.aggregation_hidden={hidden}"])


def test_a_hidden_width_tensor_parallel_does_not_divide_is_refused():
    with pytest.raises(ConfigError, match=r"parallel\.tensor_parallel=2 does not divide "
                                          r"lev\.aggregation_hidden=15; use tensor_parallel in"):
        load_config(TINY, ["lev.aggregation=mlp", "lev.aggregation_hidden=15",
                           "parallel.tensor_parallel=2"])


def test_the_default_is_the_linear_projection():
    lev = load_config(TINY).lev
    assert (lev.aggregation, lev.aggregation_hidden) == ("linear", None)


# --- parameter counts ------------------------------------------------------------------

def _printed_lev_count(config: str, *overrides: str) -> int:
    """The LEV column of ``python -m pretrain.params`` (counted on the built model)."""
    proc = subprocess.run([sys.executable, "-m", "pretrain.params", "--config", config,
                           *overrides], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("lev "))
    return int(row.split()[-1].replace(",", ""))


def _levs_formula(config: str, *overrides: str) -> int:
    """``K*b*s + s*G*R + R*h + h*d`` (``+ d`` with output_norm) from the config alone
    (per-digit codebooks)."""
    c = load_config(REPO / config, list(overrides))
    lev, d = c.lev, c.model.hidden_size
    assert lev.aggregation == "mlp" and not lev.share_codebooks
    base = 2
    while base**lev.num_coords < c.model.vocab_size:
        base += 1
    h = lev.aggregation_hidden or lev.num_modes
    return (lev.num_coords * base * lev.seed_dim + lev.seed_dim * lev.grid_size * lev.num_modes
            + lev.num_modes * h + h * d + (d if lev.output_norm else 0))


@pytest.mark.parametrize("config,overrides", [
    (TINY, ["lev.aggregation=mlp"]),
    (TINY, ["lev.aggregation=mlp", "lev.aggregation_hidden=128"]),
    ("pretrain/configs/lev_1b2.yaml", ["lev.aggregation=mlp"]),
], ids=["tiny-h=R", "tiny-h=d", "1b2-h=R"])
def test_the_params_cli_counts_the_mlp_aggregation_as_the_closed_form(config, overrides):
    from pretrain.training.model import closed_form_lev_count

    printed = _printed_lev_count(config, *overrides)
    assert printed == _levs_formula(config, *overrides)
    assert printed == closed_form_lev_count(load_config(REPO / config, overrides))


# --- model builder ---------------------------------------------------------------------

def test_the_model_builder_keeps_the_mlp_aggregation_at_the_base_lr_and_decays_it():
    code = (
        "import json\n"
        "from pretrain.config import OptimizerConfig, load_config\n"
        "from pretrain.runtime.distributed import destroy_distributed, init_distributed\n"
        "from pretrain.training.model import build_model\n"
        "from pretrain.training.optimizer import build_optimizer\n"
        f"c = load_config('{TINY}', ['lev.lr_mult=30', 'lev.aggregation=mlp'])\n"
        "init_distributed(1, 1)\n"
        "lev = build_model(c).embedding.word_embeddings\n"
        "groups = build_optimizer(lev, OptimizerConfig(lr=1e-3, weight_decay=0.1)).param_groups\n"
        "group = {id(p): g for g in groups for p in g['params']}\n"
        "print(json.dumps({n: [group[id(p)]['lr'], group[id(p)]['weight_decay'] > 0]\n"
        "                  for n, p in lev.named_parameters()}))\n"
        "destroy_distributed()\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=180, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    lr_and_decay = json.loads(out.stdout.strip().splitlines()[-1])
    assert lr_and_decay["aggregation_in"] == [1e-3, True]
    assert lr_and_decay["projection"] == [1e-3, True]
    assert lr_and_decay["codebooks"][0] == pytest.approx(3e-2)  # the inner weights: lr_mult


# --- resume ----------------------------------------------------------------------------

def _shapes(*overrides: str) -> tuple[dict, dict]:
    """(the shape a checkpoint saved before the fields existed records, this run's shape)."""
    from pretrain.training.trainer import Trainer, _shape_defaults

    run_shape = Trainer._model_shape(types.SimpleNamespace(config=load_config(TINY, overrides)))
    saved = {k: v for k, v in Trainer._model_shape(
        types.SimpleNamespace(config=load_config(TINY))).items() if k not in NEW_KEYS}
    assert set(NEW_KEYS) <= set(run_shape) and set(NEW_KEYS) <= set(_shape_defaults())
    return saved, run_shape


def _check(saved: dict, run_shape: dict, tag_dir: Path) -> None:
    from pretrain.training.trainer import _shape_defaults

    check_compatible({"model_shape": saved, "data_fingerprint": "d", "order_fingerprint": "o"},
                     model_shape=run_shape, data_fingerprint="d", order_fingerprint="o",
                     layer_spec="local", force=False, tag_dir=tag_dir,
                     shape_defaults=_shape_defaults())


def test_a_checkpoint_saved_before_the_aggregation_fields_resumes_into_linear(tmp_path):
    _check(*_shapes(), tmp_path)


def test_a_checkpoint_saved_before_the_aggregation_fields_is_refused_the_mlp(tmp_path):
    with pytest.raises(CheckpointMismatchError,
                       match=r"lev\.aggregation: checkpoint 'linear', config 'mlp'"):
        _check(*_shapes("lev.aggregation=mlp"), tmp_path)


def test_training_flops_count_the_aggregation_mlp_instead_of_the_projection():
    from pretrain.config import load_config
    from pretrain.runtime.metrics import model_flops_per_token

    linear = load_config("pretrain/configs/tiny_lev.yaml")
    mlp = load_config("pretrain/configs/tiny_lev.yaml",
                      ["lev.aggregation=mlp", "lev.aggregation_hidden=96"])
    r, d = linear.lev.num_modes, linear.model.hidden_size
    assert model_flops_per_token(mlp) - model_flops_per_token(linear) == 3 * 2 * (
        r * 96 + 96 * d - r * d)
