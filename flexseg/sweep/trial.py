"""The job side of an Optuna trial: report the objective per epoch and ask whether to stop (pruning).

The job reopens the study from its storage (SQLite next to the MLflow store) with the sweep's pruner,
so it works in any process the launcher runs it in. A pruned job sets the trial's `pruned` user
attribute; the sweeper then tells Optuna PRUNED and tags the MLflow run.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

log = logging.getLogger(__name__)


def open_storage(url: str):  # type: ignore[no-untyped-def]
    """Optuna's RDB storage with a patient SQLite connection (parallel jobs write intermediate values)."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def build_pruner(cfg: Optional[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """An Optuna pruner from its Hydra config (`_target_` + arguments); None: Optuna's default."""
    if not cfg:
        return None
    from hydra.utils import instantiate

    return instantiate(cfg)


class TrialReporter:
    """Callable `(epoch, value) -> stop?` for one trial of a stored study."""

    def __init__(self, trial: dict[str, Any], pruner: Optional[dict[str, Any]]) -> None:
        import optuna

        study = optuna.load_study(study_name=trial["study"], storage=open_storage(trial["storage"]),
                                  pruner=build_pruner(pruner))
        self._trial = optuna.trial.Trial(study, int(trial["trial_id"]))
        self.number = int(trial["number"])
        self.pruned = False

    def __call__(self, epoch: int, value: float) -> bool:
        """Report `value` at `epoch` (1-based); True when the pruner says this trial is hopeless."""
        if not math.isfinite(value):
            return False
        self._trial.report(float(value), step=epoch)
        if self._trial.should_prune():
            self.pruned = True
            self._trial.set_user_attr("pruned", True)
            log.info("trial %d pruned after epoch %d (objective %.4f): the pruner found it unpromising",
                     self.number, epoch, value)
        return self.pruned
