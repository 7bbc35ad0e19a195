"""flexseg's grid sweep (`flexseg -m key=a,b`): Hydra's basic sweep with a parent run and failure records."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from flexseg.sweep.session import SweepSession, exit_on_failures, override_values

log = logging.getLogger(__name__)


def launcher_is_parallel(config: Any) -> bool:
    """Whether the launcher runs jobs at the same time on this machine (joblib, submitit's local executor)."""
    target = str(config.hydra.launcher.get("_target_", ""))
    return "joblib" in target or "LocalLauncher" in target


def run_grid(sweeper: Any, arguments: list[str]) -> list[Any]:
    """Run every combination of the sweep overrides, batch by batch, then summarise on the parent run.

    Args:
        sweeper: The `FlexsegGridSweeper` (Hydra's `BasicSweeper` state: config, launcher, params).
        arguments: The command's task overrides.
    """
    params = [*sweeper._parse_config(), *arguments]
    overrides = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader).parse_overrides(params)
    space = {o.get_key_element(): ",".join(o.sweep_string_iterator()) for o in overrides if o.is_sweep_override()}
    session = SweepSession(sweeper.config, "grid", space, parallel=launcher_is_parallel(sweeper.config))
    sweeper.overrides = sweeper.split_arguments(overrides, sweeper.max_batch_size)
    Path(session.sweep_dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, session.sweep_dir / "multirun.yaml")
    session.open()
    returns, num = [], 0
    while not sweeper.is_done():
        batch = sweeper.get_job_batch()
        sweeper.validate_batch_is_legal(batch)
        results = sweeper.launcher.launch(batch, initial_job_idx=num)
        session.record(num, batch, results)
        returns.append(results)
        num += len(batch)
    rows = []
    for o in session.outcomes:
        values = override_values(o.overrides)
        rows.append({"job": o.num, "state": o.state, "objective": o.value if math.isfinite(o.value) else math.nan,
                     "error": o.error, **{k: values.get(k, "") for k in space}})
    session.finish(rows)
    exit_on_failures(session)
    return returns
