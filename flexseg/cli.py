"""The `flexseg` command: Hydra composes the typed config, then one mode runner does the work.

No TensorFlow or MLflow import happens here at module level: `flexseg --help` and
`flexseg --cfg job` answer in about a second.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from flexseg.config.schemas import Config
from flexseg.config.store import CONF_DIR, register_configs
from flexseg.config.validation import check_override_key, validate_config
from flexseg.context import RunContext
from flexseg.errors import ERROR_MARKER, FlexsegError

log = logging.getLogger(__name__)

MODE_MODULES = {
    "train": "train", "eval": "evaluate", "infer": "infer", "tiled": "tiled", "stats": "stats", "preview": "preview",
}



def _fail(message: str) -> None:
    sys.stderr.write(f"flexseg: error: {message}\n")
    sys.exit(2)


def _check_overrides(argv: list[str]) -> None:
    """Stop on a misspelled `key=value` override before Hydra runs, suggesting the closest key."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help:
        return
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException:
        return  # a syntax error: Hydra reports it with its own message
    for override in overrides:
        if override.type == OverrideType.CHANGE and override.package is None:
            check_override_key(override.key_or_group)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(dcfg: DictConfig) -> float | None:
    try:
        cfg: Config = validate_config(OmegaConf.to_object(dcfg))
        hc = HydraConfig.get()
        ctx = RunContext(
            run_dir=Path(hc.runtime.output_dir),
            overrides=list(hc.overrides.task),
            config_yaml=OmegaConf.to_yaml(dcfg, resolve=True),
        )
        runner = importlib.import_module(f"flexseg.modes.{MODE_MODULES[cfg.mode.value]}")
        results = runner.run(cfg, ctx)
    except FlexsegError as err:
        _fail(str(err))
        return None
    except Exception as err:
        # A data error raised inside a tf.data map reaches us wrapped in a TensorFlow error.
        text = str(err)
        if type(err).__module__.startswith("tensorflow") and ERROR_MARKER in text:
            _fail(text.split(ERROR_MARKER, 1)[1].split("\n", 1)[0].strip())
        raise
    log.info("results: %s", ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
    # Returned for sweepers that optimise a number (Optuna and friends).
    return results.get("objective")


def main() -> None:
    """Console entry point of `flexseg` and `python -m flexseg`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        _check_overrides(sys.argv[1:])
    except FlexsegError as err:
        _fail(str(err))
    register_configs()
    _hydra_main()
