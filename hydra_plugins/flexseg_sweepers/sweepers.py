"""The plugin classes Hydra instantiates; the logic is in `flexseg.sweep.grid` and `flexseg.sweep.optuna_sweeper`."""

from __future__ import annotations

from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class FlexsegGridSweeper(BasicSweeper):
    """Hydra's grid (`key=a,b`) with a parent MLflow run, failed jobs recorded, exit 2 at the end if any failed."""

    def sweep(self, arguments: list[str]) -> Any:
        from flexseg.sweep.grid import run_grid

        return run_grid(self, arguments)


class FlexsegOptunaSweeper(Sweeper):
    """Optuna ask/tell search over `params`, stored next to the MLflow store so a killed sweep continues."""

    def __init__(self, n_trials: int = 20, n_jobs: Optional[int] = None, study_name: Optional[str] = None,
                 storage: Optional[str] = None, sampler: Optional[dict] = None,  # type: ignore[type-arg]
                 pruner: Optional[dict] = None, params: Optional[dict] = None) -> None:  # type: ignore[type-arg]
        self.n_trials, self.n_jobs, self.study_name, self.storage = n_trials, n_jobs, study_name, storage
        self.sampler, self.pruner, self.params = sampler, pruner, dict(params or {})
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from flexseg.sweep.optuna_sweeper import run_optuna

        return run_optuna(self, arguments)
