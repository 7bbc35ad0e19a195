"""Registration of the typed schemas and the experiment recipes in Hydra's ConfigStore.

Importing this module has no side effects; `register_configs()` fills Hydra's store (and lets
booleans pick `true` / `false` choices), and the CLI and the tests call it before composing. No
TensorFlow or MLflow import here.
"""

from __future__ import annotations

from pathlib import Path

from flexseg.config.choices import accept_bool_choices
from flexseg.config.schemas import Config

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CONF_DIR = REPO_ROOT / "conf"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"

GROUPS = ("model", "dataset", "augment", "callbacks", "tiling", "experiment")


def register_configs() -> None:
    """Register the root schema and the experiment recipes in Hydra's ConfigStore.

    Also lets `true` / `false` select the members of that name of the config's choices (see
    `flexseg.config.choices.accept_bool_choices`), so `train.resume=true` keeps working.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    accept_bool_choices()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    # `experiments/` is the `experiment` group (package _global_), without a second conf tree.
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        cs.store(group="experiment", name=path.stem, node=OmegaConf.load(path), package="_global_")
