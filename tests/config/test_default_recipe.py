"""The default recipe (issue 14, chosen by `make race`): what `flexseg` composes with nothing chosen, and the
reference experiments keeping their own values under it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, compose

from flexseg.config.choices import Normalization
from flexseg.config.schemas import ModelConfig
from flexseg.modes.common import loss_name

REFERENCE = ("lizard", "lung_tumor", "edf_cervical", "leukocyte", "tiled_cell")


def test_default_recipe() -> None:
    cfg = compose([])
    m, t = cfg.model, cfg.train
    assert (m.normalization, m.base_filters, m.base_kernels, m.num_layers) == (Normalization.instance, 16, 3, 6)
    assert (m.image_height, m.image_width) == (256, 256)
    assert (t.learning_rate, t.batch_size, t.optimizer.value, t.lr_schedule.value) == (3e-3, 2, "adam", "constant")
    assert t.loss is None and loss_name(cfg) == "dice_ce_loss"
    assert loss_name(compose(["dataset=synthetic", "model.num_classes=1", "dataset.classes=[{name: bg, color: [0,0,0]},"
                              "{name: fg, color: [255,255,255]}]"])) == "dice_ce_loss"  # binary: BCE + dice
    assert cfg.augment.name == "none" and cfg.train.precision.value == "auto"


def test_model_schema_defaults_match_conf_model_flexunet() -> None:
    """`flexseg` reads conf/model/flexunet.yaml; code building a ModelConfig() gets the same model."""
    values = yaml.safe_load((REPO / "conf" / "model" / "flexunet.yaml").read_text())
    schema = ModelConfig()
    for key, value in values.items():
        default = getattr(schema, key)
        assert getattr(default, "value", default) == value, key


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_experiments_state_what_the_default_recipe_changed(name: str) -> None:
    cfg = compose([f"experiment={name}"])
    assert cfg.model.normalization == Normalization.none and cfg.model.base_kernels in (7, 9)
    assert cfg.train.batch_size == 2 and cfg.train.learning_rate <= 1e-4
    assert cfg.train.loss in ("categorical_crossentropy", "bce_dice_loss")
    assert cfg.augment.name == ("reference" if name == "tiled_cell" else "none")


def test_demo_keeps_its_recipe(tmp_path: Path) -> None:
    cfg = compose(["experiment=demo"])
    assert (cfg.model.normalization, cfg.model.base_kernels, cfg.model.image_height) == (Normalization.instance, 3, 128)
    assert (cfg.train.learning_rate, cfg.train.batch_size, loss_name(cfg)) == (3e-3, 8, "categorical_crossentropy")
    assert cfg.augment.name == "none"
