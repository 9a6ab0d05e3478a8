"""pretrain/config/: YAML + dotted overrides -> validated dataclasses, or a ConfigError
that names the field and the fix."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from pretrain.config import ConfigError, config_to_dict, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "pretrain" / "configs"
SHIPPED = sorted(CONFIGS.glob("*.yaml"))
LEV_1B2 = CONFIGS / "lev_1b2.yaml"


# --- unknown names ---------------------------------------------------------------------

def test_unknown_section_lists_the_sections_and_suggests_the_close_name():
    with pytest.raises(ConfigError, match=r"unknown config key 'modle' \(did you mean 'model'\?\); "
                                          r"valid keys: \['checkpoint', 'data', 'lev', 'model', "
                                          r"'optimizer', 'parallel', 'train', 'watchdog'\]"):
        load_config(None, ["modle.num_layers=2"])


def test_unknown_field_lists_the_fields_and_suggests_the_close_name():
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.num_layer' "
                                          r"\(did you mean 'model\.num_layers'\?\); "
                                          r"valid keys: \[.*'hidden_size'.*'num_layers'.*\]"):
        load_config(None, ["model.num_layer=2"])


def test_unknown_field_in_a_yaml_file_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("base: " + str(LEV_1B2) + "\nlev:\n  num_mode: 512\n")
    with pytest.raises(ConfigError, match=r"num_mode.*did you mean .*num_modes"):
        load_config(path)


def test_override_without_a_section_is_malformed():
    with pytest.raises(ConfigError, match=r"override '\.num_layers=2' is not 'section\.field=value'"):
        load_config(None, [".num_layers=2"])


# --- divisibility ------------------------------------------------------------------------

def test_heads_not_divisible_by_tensor_parallel():
    with pytest.raises(ConfigError, match=r"parallel\.tensor_parallel=3 does not divide "
                                          r"model\.num_attention_heads=16; use tensor_parallel "
                                          r"in \[1, 2, 4, 8, 16\]"):
        load_config(LEV_1B2, ["parallel.tensor_parallel=3"])


def test_vocab_not_divisible_by_tensor_parallel():
    with pytest.raises(ConfigError, match=r"parallel\.tensor_parallel=2 does not divide "
                                          r"model\.vocab_size=50257; use tensor_parallel in \[1, "):
        load_config(LEV_1B2, ["parallel.tensor_parallel=2", "model.vocab_size=50257"])


def test_lev_modes_not_divisible_by_tensor_parallel():
    with pytest.raises(ConfigError, match=r"parallel\.tensor_parallel=2 does not divide "
                                          r"lev\.num_modes=1023; use tensor_parallel in \[1, 3, "):
        load_config(LEV_1B2, ["parallel.tensor_parallel=2", "lev.num_modes=1023"])


def test_hidden_not_divisible_by_heads():
    with pytest.raises(ConfigError, match=r"model\.hidden_size=2048 is not divisible by "
                                          r"model\.num_attention_heads=12; use heads in \[1, 2, "):
        load_config(LEV_1B2, ["model.num_attention_heads=12"])


def test_sequence_parallel_needs_tensor_parallel_above_one():
    with pytest.raises(ConfigError, match=r"parallel\.sequence_parallel=true needs "
                                          r"parallel\.tensor_parallel > 1; set "
                                          r"parallel\.sequence_parallel=false"):
        load_config(LEV_1B2, ["parallel.sequence_parallel=true"])


# --- types ------------------------------------------------------------------------------

def test_string_for_an_int_is_rejected():
    with pytest.raises(ConfigError, match=r"model\.num_layers='four' is a str; it must be a int"):
        load_config(None, ["model.num_layers=four"])


def test_bool_for_an_int_is_rejected():
    with pytest.raises(ConfigError, match=r"model\.num_layers=True is a bool; it must be a int"):
        load_config(None, ["model.num_layers=true"])


def test_int_for_a_float_is_accepted_as_float():
    config = load_config(None, ["optimizer.lr=1", "optimizer.min_lr=0"])
    assert config.optimizer.lr == 1.0 and type(config.optimizer.lr) is float
    assert type(config.optimizer.min_lr) is float


@pytest.mark.parametrize(("override", "allowed"), [
    ("model.embedding=lve", r"\['lev', 'tied', 'untied'\]"),
    ("train.precision=fp16", r"\['fp32', 'bf16'\]"),
    ("train.recompute=all", r"\['none', 'selective', 'full'\]"),
])
def test_values_outside_a_literal_are_rejected_with_the_allowed_values(override, allowed):
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}='{value}'; use one of {allowed}"):
        load_config(None, [override])


# --- overrides and files ----------------------------------------------------------------

@pytest.mark.parametrize("override", ["model.num_layers", "num_layers=4", "model.=4"])
def test_malformed_override_is_rejected_with_the_expected_form(override):
    with pytest.raises(ConfigError, match=rf"override '{override}' is not 'section\.field=value' "
                                          r"\(e\.g\. model\.num_layers=4\)"):
        load_config(None, [override])


def test_overrides_are_parsed_as_yaml():
    config = load_config(LEV_1B2, [
        "parallel.tensor_parallel=2", "parallel.sequence_parallel=true",
        "model.num_query_groups=null", "optimizer.lr=6.0e-4", "model.num_layers=4",
        "checkpoint.save_dir=runs/x", "train.exit_duration_mins=90",
    ])
    assert config.parallel.sequence_parallel is True
    assert config.parallel.tensor_parallel == 2
    assert config.model.num_query_groups is None
    assert config.optimizer.lr == pytest.approx(6e-4)
    assert config.model.num_layers == 4
    assert config.checkpoint.save_dir == "runs/x"
    assert config.train.exit_duration_mins == 90.0


def test_exponent_without_a_dot_is_read_as_a_float():
    # PyYAML (YAML 1.1) reads `3e-4` as a string; load_config's docstring promises a float.
    assert load_config(None, ["optimizer.lr=3e-4"]).optimizer.lr == pytest.approx(3e-4)


def test_overrides_win_over_the_file():
    assert load_config(LEV_1B2, ["train.micro_batch_size=4"]).train.micro_batch_size == 4


def test_base_file_is_inherited_and_overridden_section_by_section():
    lev = config_to_dict(load_config(LEV_1B2))
    tied = config_to_dict(load_config(CONFIGS / "tied_1b2.yaml"))
    assert tied["model"]["embedding"] == "tied"
    assert tied["checkpoint"]["save_dir"] == "runs/tied_1b2"
    lev["model"]["embedding"] = tied["model"]["embedding"]
    lev["checkpoint"]["save_dir"] = tied["checkpoint"]["save_dir"]
    assert tied == lev


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match=r"config file .*no_such\.yaml does not exist"):
        load_config(CONFIGS / "no_such.yaml")


def test_no_file_gives_the_documented_defaults():
    config = load_config(None)
    assert config.model.hidden_size == 2048 and config.lev.num_modes == 1024


# --- shipped configs --------------------------------------------------------------------

def test_the_tiny_configs_and_the_ladders_three_rungs_are_shipped():
    assert [p.name for p in SHIPPED] == [
        "lev_1b2.yaml", "lev_200m.yaml", "lev_400m.yaml", "tied_1b2.yaml", "tied_200m.yaml",
        "tied_400m.yaml", "tiny_lev.yaml", "tiny_tied.yaml", "tiny_untied.yaml",
        "untied_1b2.yaml", "untied_200m.yaml", "untied_400m.yaml",
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_config_loads(path):
    config = load_config(path)
    assert config.model.embedding == path.stem.removeprefix("tiny_").split("_")[0]


def test_1b2_configs_share_the_backbone_and_differ_only_in_the_embedding():
    models = {kind: load_config(CONFIGS / f"{kind}_1b2.yaml").model
              for kind in ("lev", "tied", "untied")}
    assert {kind: m.embedding for kind, m in models.items()} == {
        "lev": "lev", "tied": "tied", "untied": "untied"}
    for f in fields(models["lev"]):
        if f.name != "embedding":
            values = {kind: getattr(m, f.name) for kind, m in models.items()}
            assert len(set(values.values())) == 1, f"model.{f.name} differs: {values}"


@pytest.mark.parametrize("override,message", [
    ("train.log_interval=0", r"train\.log_interval=0 must be >= 1"),
    ("train.train_steps=0", r"train\.train_steps=0 must be >= 1"),
    ("train.eval_interval=-1", r"train\.eval_interval=-1 must be >= 0"),
    ("checkpoint.keep_last=0", r"checkpoint\.keep_last=0 must be >= 1"),
    ("checkpoint.save_interval=-5", r"checkpoint\.save_interval=-5 must be >= 0"),
    ("optimizer.decay_steps=10", r"optimizer\.decay_steps=10 must exceed optimizer\.warmup_steps=2000"),
    ("optimizer.eps=0", r"optimizer\.eps > 0"),
    ("optimizer.beta2=1.0", r"beta2=1\.0 must be in \[0, 1\)"),
])
def test_out_of_range_values_name_the_field_and_the_bound(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
