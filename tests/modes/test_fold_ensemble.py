"""k-fold training runs carry their fold; eval of their parent run scores the fold ensemble."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import pytest
from conftest import TINY, compose
from omegaconf import OmegaConf

from flexseg import tracking
from flexseg.context import RunContext
from flexseg.models.registry import build_model
from flexseg.modes import evaluate, train


def _store(tmp: Path) -> list[str]:
    return [*TINY, f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"dataset.root={tmp}/synthetic",
            "tracking.experiment=folds", "callbacks=minimal"]


def _fold_run_without_training(cfg, tmp: Path, exp_id: str) -> str:  # type: ignore[no-untyped-def]
    """A finished training run of fold 1 whose best checkpoint (an untrained model) is only in MLflow."""
    keras.utils.set_random_seed(1)
    path = tmp / "fold1" / "best.keras"
    path.parent.mkdir()
    build_model(cfg.model).save(path)
    with tracking.start_run(exp_id, tags={"mode": "train", "cv_folds": "2", "cv_fold": "1"}) as run_id:
        tracking.log_artifact(path, "checkpoints")
    return run_id


def test_eval_of_a_cross_validation_parent_scores_the_fold_ensemble(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from mlflow.tracking import MlflowClient

    caplog.set_level(logging.INFO)
    overrides = [*_store(tmp_path), "train.epochs=1", "dataset.folds=2", "dataset.fold=0"]
    cfg = compose(overrides)
    train.run(cfg, RunContext(tmp_path / "fold0", overrides, OmegaConf.to_yaml(OmegaConf.structured(cfg))))
    assert "fold 0 of 2: 6 train / 6 valid pairs (stratified by class presence)" in caplog.text  # 8 + 4 pooled
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp_id = client.get_experiment_by_name("folds").experiment_id
    (trained,) = client.search_runs([exp_id])
    assert (trained.data.tags["cv_folds"], trained.data.tags["cv_fold"]) == ("2", "0")
    folds = [trained.info.run_id, _fold_run_without_training(cfg, tmp_path, exp_id)]
    parent = client.create_run(exp_id, run_name="cv").info.run_id  # as a sweep's parent: no checkpoint
    for run_id in folds:
        client.set_tag(run_id, tracking.mlflow.PARENT_TAG, parent)
    assert tracking.child_training_runs(parent) == folds

    eval_overrides = [*_store(tmp_path), "mode=eval", f"ckpt=runs:/{parent}"]
    results = evaluate.run(compose(eval_overrides), RunContext(tmp_path / "eval", eval_overrides, ""))
    assert f"ensemble of 2 fold models (runs {folds[0]}, {folds[1]})" in caplog.text
    (evaluation,) = client.search_runs([exp_id], filter_string="tags.mode = 'eval'")
    assert evaluation.info.status == "FINISHED" and evaluation.data.tags[tracking.mlflow.PARENT_TAG] == parent
    dice = evaluation.data.metrics["test_mean_foreground_dice"]
    assert dice == pytest.approx(results["mean_foreground_dice"])
    assert client.get_run(parent).data.metrics["test_mean_foreground_dice"] == pytest.approx(dice)
    for run_id in folds:  # the ensemble's scores are the parent's, not a fold's
        assert "test_mean_foreground_dice" not in client.get_run(run_id).data.metrics
