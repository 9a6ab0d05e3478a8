"""bf16 gradients accumulate and reduce in fp32; layer specs are recorded and checked."""

from pathlib import Path

import pytest

from pretrain.checkpoint.manager import CheckpointMismatchError, check_compatible
from pretrain.config import ConfigError, load_config
from pretrain.training.model import layer_spec
from pretrain.training.trainer import Trainer, deepspeed_config

LEV_1B2 = Path(__file__).resolve().parents[2] / "pretrain" / "configs" / "lev_1b2.yaml"


def test_bf16_accumulates_and_reduces_gradients_in_fp32():
    ds = deepspeed_config(load_config(LEV_1B2), dp_size=32)
    assert ds["bf16"]["enabled"]
    assert ds["data_types"] == {"grad_accum_dtype": "fp32"}
    assert ds["communication_data_type"] == "fp32"


def test_fp32_runs_need_no_precision_settings():
    ds = deepspeed_config(load_config(LEV_1B2, ["train.precision=fp32"]), dp_size=2)
    assert "data_types" not in ds and "communication_data_type" not in ds


def test_bf16_with_zero0_is_refused_because_deepspeed_would_accumulate_in_bf16():
    with pytest.raises(ConfigError, match=r"train.precision=bf16 needs train.zero_stage >= 1"):
        load_config(LEV_1B2, ["train.zero_stage=0"])


def test_a_bf16_zero1_checkpoint_is_refused_at_another_dp_size_before_loading(tmp_path):
    trainer = Trainer(load_config(LEV_1B2, ["train.zero_stage=1"]))  # the shipped config is ZeRO-2
    trainer.dp_size = 16
    trainer.batch = None
    with pytest.raises(CheckpointMismatchError,
                       match=r"saved at DP=32 with bf16 ZeRO-1, whose fp32 master weights "
                             r"DeepSpeed's BF16_Optimizer cannot re-partition.*Resume at DP=32"):
        trainer._allow_dp_change(32, tmp_path)


def test_transformer_engine_asked_for_on_a_host_without_it_says_what_to_do():
    with pytest.raises(ConfigError, match=r"model.layer_spec=transformer-engine needs CUDA"):
        layer_spec(load_config(LEV_1B2, ["model.layer_spec=transformer-engine"]))
    assert layer_spec(load_config(LEV_1B2, ["model.layer_spec=local"]))[1] == "local"


def test_a_checkpoint_of_another_layer_spec_is_refused_with_the_setting_to_use(tmp_path):
    meta = {"layer_spec": "transformer-engine", "model_shape": {}, "data_fingerprint": "d",
            "order_fingerprint": "o"}
    with pytest.raises(CheckpointMismatchError,
                       match=r"trained with the 'transformer-engine' layer spec but this run "
                             r"builds 'local'.*set model.layer_spec=transformer-engine on a "
                             r"CUDA host"):
        check_compatible(meta, model_shape={}, data_fingerprint="d", order_fingerprint="o",
                         layer_spec="local", force=True, tag_dir=tmp_path)


def _meta_saved_before_output_norm() -> tuple[dict, dict]:
    from pretrain.training.trainer import _shape_defaults

    shape = {k: v for k, v in _shape_defaults().items() if k != "lev.output_norm"}
    return {"model_shape": shape, "data_fingerprint": "d", "order_fingerprint": "o"}, shape


def test_a_checkpoint_saved_before_a_field_existed_resumes_into_its_default(tmp_path):
    from pretrain.training.trainer import _shape_defaults

    meta, shape = _meta_saved_before_output_norm()
    check_compatible(meta, model_shape={**shape, "lev.output_norm": False},
                     data_fingerprint="d", order_fingerprint="o", layer_spec="local",
                     force=False, tag_dir=tmp_path, shape_defaults=_shape_defaults())


def test_a_checkpoint_saved_before_a_field_existed_is_refused_another_value(tmp_path):
    from pretrain.training.trainer import _shape_defaults

    meta, shape = _meta_saved_before_output_norm()
    with pytest.raises(CheckpointMismatchError,
                       match=r"lev.output_norm: checkpoint False, config True"):
        check_compatible(meta, model_shape={**shape, "lev.output_norm": True},
                         data_fingerprint="d", order_fingerprint="o", layer_spec="local",
                         force=False, tag_dir=tmp_path, shape_defaults=_shape_defaults())


def test_a_shape_mismatch_names_the_overrides_that_restore_the_checkpoints_settings(tmp_path):
    """A run started before lev.output_norm became the default resumes by overriding it."""
    from pretrain.training.trainer import _shape_defaults

    meta, shape = _meta_saved_before_output_norm()
    with pytest.raises(CheckpointMismatchError,
                       match=r"restore the old settings \(overrides: lev\.output_norm=false\)"):
        check_compatible(meta, model_shape={**shape, "lev.output_norm": True},
                         data_fingerprint="d", order_fingerprint="o", layer_spec="local",
                         force=False, tag_dir=tmp_path, shape_defaults=_shape_defaults())
