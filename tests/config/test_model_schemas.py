"""The `model` group's typed per-model keys: each conf/model/<name>.yaml composes into its own schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import compose, run_cli
from hydra.errors import ConfigCompositionException

from flexseg.config.models import (
    MODEL_SCHEMAS,
    AttentionUNetConfig,
    EfficientNetVariant,
    SwinUNetConfig,
    U2NetConfig,
    compute_size_multiple,
)
from flexseg.config.schemas import ModelConfig
from flexseg.config.validation import check_override_key
from flexseg.errors import FlexsegError


@pytest.mark.parametrize("name", sorted(MODEL_SCHEMAS))
def test_each_model_composes_into_its_schema_with_the_demo(name: str) -> None:
    """`model=<name> experiment=demo` (the acceptance command) composes and validates for every model."""
    cfg = compose([f"model={name}", "experiment=demo"])
    assert type(cfg.model) is MODEL_SCHEMAS[name] and cfg.model.name == name
    assert cfg.model.image_height == 128 and cfg.model.num_classes == 4  # the experiment's values still apply


def test_own_keys_are_typed_and_overridable() -> None:
    cfg = compose(["model=efficient_unet", "model.backbone=b3", "model.weights=/w/b3.h5"])
    assert cfg.model.backbone is EfficientNetVariant.b3 and cfg.model.weights == "/w/b3.h5"
    assert compose(["model=attention_unet", "model.gate_reduction=4"]).model.gate_reduction == 4
    with pytest.raises(ConfigCompositionException) as info:
        compose(["model=attention_unet", "model.gate_reduction=many"])
    assert "could not be converted to Integer" in str(info.value.__cause__)
    with pytest.raises(ConfigCompositionException) as info:
        compose(["model=efficient_unet", "model.backbone=b9"])
    assert "expected one of [b0, b1, b2, b3, b4, b5, b6, b7]" in str(info.value.__cause__)
    with pytest.raises(ConfigCompositionException):  # flexunet's schema has no attention keys
        compose(["model.gate_reduction=4"])


def test_misspelled_or_foreign_model_key_names_the_model() -> None:
    with pytest.raises(FlexsegError, match=r"'gate_reductio' is not a key of 'model' \(model=attention_unet\)\. "
                                           r"Did you mean 'model\.gate_reduction'\?"):
        check_override_key("model.gate_reductio", ["attention_unet"])
    with pytest.raises(FlexsegError, match=r"\(model=flexunet\)\. It is a key of model=swin_unet, transunet"):
        check_override_key("model.num_heads")
    with pytest.raises(FlexsegError, match=r"\(model=flexunet\)"):  # a sweep: every chosen model must have it
        check_override_key("model.window_size", ["swin_unet", "flexunet"])
    check_override_key("model.window_size", ["swin_unet"])
    check_override_key("model.num_layers", ["deeplabv3plus", "flexunet"])


def test_cli_stops_on_a_bad_model_key_type_or_option(tmp_path: Path) -> None:
    for args, expected in (
        (["model=attention_unet", "model.bogus=1"], "'bogus' is not a key of 'model' (model=attention_unet)"),
        (["model=attention_unet", "model.gate_reduction=abc"], "model.gate_reduction"),
        (["model=unet4"], "model=unet4: no such model. Did you mean 'u2net'? Available: attention_unet, deeplabv3plus"),
    ):
        proc = run_cli(["--cfg", "job", *args], cwd=tmp_path, check=False)
        assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=swin_unet", "model.window_size=16"],
         r"model\.image_height=256 is not divisible by patch_size \* 2\*\*\(num_layers-1\) \* window_size=512"),
        (["model=deeplabv3plus", "tiling.tile_size=200"], r"tiling\.tile_size=200 is not divisible by output_stride=16"),
        (["model=efficient_unet", "model.image_width=240"], r"model\.image_width=240 is not divisible by .*=32"),
        (["model=swin_unet", "model.base_filters=30", "model.num_heads=4"], r"model\.base_filters=30 .* model\.num_heads=4"),
        (["model=deeplabv3plus", "model.output_stride=32"], r"model\.output_stride=32; use 16 or 8"),
        (["model=u2net", "model.dilated_stages=6"], r"model\.dilated_stages=6; use 0\.\.num_layers-1 \(5\)"),
        (["model=transunet", "model.hidden_size=100", "model.num_heads=3"], r"hidden_size=100 is not divisible"),
        (["model=attention_unet", "model.name=flexunet"], r"model\.name=flexunet but the model keys are those of "
                                                          r"attention_unet: choose a model with model=flexunet"),
    ],
)
def test_model_checks_at_config_time(overrides: list[str], message: str) -> None:
    with pytest.raises(FlexsegError, match=message):
        compose(overrides)


def test_size_multiples() -> None:
    assert compute_size_multiple(ModelConfig(num_layers=6))[0] == 32
    assert compute_size_multiple(AttentionUNetConfig(num_layers=5))[0] == 16
    assert compute_size_multiple(SwinUNetConfig(num_layers=4, patch_size=4, window_size=4))[0] == 128
    # The paper's U^2-Net (RSU-7, 6, 5, 4, 4F, 4F): every stage pools 32x in all.
    paper = U2NetConfig(num_layers=6, rsu_height=7, dilated_stages=2)
    assert paper.rsu_heights() == [7, 6, 5, 4, 0, 0] and compute_size_multiple(paper)[0] == 32
