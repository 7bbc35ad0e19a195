"""A trial's epochs are reported to its stored study; a hopeless trial stops training and is marked pruned."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna

from flexseg.sweep.trial import TrialReporter
from flexseg.training.callbacks.pruning import TrialPruning

PRUNER = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0}


def _study(tmp_path: Path) -> tuple[optuna.Study, str]:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    good = study.ask()
    for epoch, value in enumerate([0.6, 0.8, 0.9], start=1):
        good.report(value, epoch)
    study.tell(good, 0.9)
    return study, storage


def _new_trial(tmp_path: Path) -> tuple[optuna.Study, optuna.trial.Trial, TrialPruning, SimpleNamespace]:
    """A study with one finished trial, a new trial of it, its pruning callback on a stand-in model."""
    study, storage = _study(tmp_path)
    trial = study.ask()
    reporter = TrialReporter({"study": "s", "storage": storage, "trial_id": trial._trial_id, "number": trial.number},
                             PRUNER)
    callback, model = TrialPruning("val_dice", reporter), SimpleNamespace(stop_training=False)
    callback.set_model(model)
    return study, trial, callback, model


def test_a_hopeless_trial_is_pruned_and_stops_training(tmp_path: Path) -> None:
    study, trial, callback, model = _new_trial(tmp_path)
    callback.on_epoch_end(0, {"val_dice": 0.1})  # below the median of the finished trial at epoch 1
    assert model.stop_training and callback.pruned_at == 1
    frozen = study.trials[trial.number]
    assert frozen.user_attrs["pruned"] is True and frozen.intermediate_values == {1: 0.1}


def test_a_promising_trial_keeps_training(tmp_path: Path) -> None:
    study, trial, callback, model = _new_trial(tmp_path)
    callback.on_epoch_end(0, {"val_dice": 0.7})
    callback.on_epoch_end(1, {"val_dice": float("nan")})  # a NaN epoch is not reported
    assert not model.stop_training and callback.pruned_at is None
    assert study.trials[trial.number].intermediate_values == {1: 0.7}


def test_an_objective_training_does_not_log_stops_a_sweep_job_only() -> None:
    import pytest
    from conftest import compose

    from flexseg.errors import FlexsegError
    from flexseg.modes.train import check_monitor

    cfg = compose(["train.objective=val_dise"])
    check_monitor(cfg)  # a single run: a warning, the objective is NaN
    with pytest.raises(FlexsegError, match=r"train.objective='val_dise' is not logged .* val_dice"):
        check_monitor(cfg, in_sweep=True)
