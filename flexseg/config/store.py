"""Registration of the typed schemas and the experiment recipes in Hydra's ConfigStore.

Importing this module has no side effects; `register_configs()` fills Hydra's store (and lets
booleans pick `true` / `false` choices), and the CLI and the tests call it before composing.
`check_group_option` lets the CLI stop on an unknown `GROUP=NAME` with the list of options. No
TensorFlow or MLflow import here.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Sequence

from flexseg.config.choices import accept_bool_choices
from flexseg.config.models import MODEL_SCHEMAS
from flexseg.config.schemas import Config, ModelConfig
from flexseg.errors import FlexsegError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CONF_DIR = REPO_ROOT / "conf"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"

GROUPS = ("model", "dataset", "augment", "callbacks", "tiling", "experiment", "hparams_search")


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
    # Each zoo model's schema, which conf/model/<name>.yaml names first in its defaults list (`- base_<name>`).
    for name, schema in MODEL_SCHEMAS.items():
        if schema is not ModelConfig:
            cs.store(group="model", name=f"base_{name}", node=schema)
    # `flexseg -m key=a,b` runs flexseg's grid sweeper (a parent MLflow run, failed jobs recorded while the
    # others go on). It takes the name of Hydra's default sweeper, `basic`, so that an hparams_search file
    # can still switch to `optuna` (a sweeper chosen in config.yaml would win over the search's choice).
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's plugin scan stores its own `basic` (again); ours goes over it afterwards
    cs.store(group="hydra/sweeper", name="basic", provider="flexseg",
             node={"_target_": "hydra_plugins.flexseg_sweepers.sweepers.FlexsegGridSweeper",
                   "max_batch_size": None, "params": None})
    # `experiments/` is the `experiment` group (package _global_), without a second conf tree.
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        cs.store(group="experiment", name=path.stem, node=OmegaConf.load(path), package="_global_")


def group_options(group: str, config_dirs: Sequence[Path] = ()) -> list[str]:
    """The option names of a config group, sorted; nested files as `sub/name`.

    Args:
        group: One of `GROUPS`.
        config_dirs: User config dirs (`--config-dir DIR`); their `DIR/GROUP/*.yaml` count too.

    Returns:
        flexseg's own options (conf/GROUP/, experiments/ for `experiment`) and the user's.
    """
    folders = [EXPERIMENTS_DIR if group == "experiment" else CONF_DIR / group, *(Path(d) / group for d in config_dirs)]
    return sorted({p.relative_to(f).with_suffix("").as_posix() for f in folders for p in f.rglob("*.yaml")})


def check_group_option(group: str, option: str, config_dirs: Sequence[Path] = ()) -> None:
    """Raise FlexsegError listing the available options when `GROUP=option` names none of them.

    Hydra itself would stop too (the groups are not `optional`), but with its search path and a hint
    about stack traces; this says what to choose and where one's own options go.
    """
    options = group_options(group, config_dirs)
    if option in options:
        return
    close = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    own = "experiments/" if group == "experiment" else f"conf/{group}/"
    raise FlexsegError(
        f"{group}={option}: no such {group}.{hint} Available: {', '.join(options)} (flexseg's in {own}; "
        f"yours go in DIR/{group}/NAME.yaml, used as flexseg --config-dir DIR {group}=NAME)."
    )


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict (a config as a container) as {'model.num_layers': 6, ...}."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten_tree(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}
