"""eval/infer/tiled of a training run log into child runs and never change the training run's status."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, compose
from omegaconf import OmegaConf

from flexseg import tracking
from flexseg.context import RunContext
from flexseg.modes import evaluate, train


def _store(tmp: Path) -> list[str]:
    return [*TINY, f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"dataset.root={tmp}/synthetic",
            "tracking.experiment=children", "callbacks=minimal"]


def test_a_failing_eval_leaves_the_training_run_finished_and_findable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    overrides = [*_store(tmp_path), "train.epochs=1"]
    cfg = compose(overrides)
    train.run(cfg, RunContext(tmp_path / "train", overrides, OmegaConf.to_yaml(OmegaConf.structured(cfg))))
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp_id = client.get_experiment_by_name("children").experiment_id
    (train_run,) = client.search_runs([exp_id])

    def broken_upload(path: Path, artifact_path: str | None = None) -> None:
        raise OSError("artifact store unreachable")

    monkeypatch.setattr(tracking, "log_artifact", broken_upload)
    eval_overrides = [*_store(tmp_path), "mode=eval"]
    with pytest.raises(OSError, match="unreachable"):
        evaluate.run(compose(eval_overrides), RunContext(tmp_path / "eval", eval_overrides, ""))

    assert client.get_run(train_run.info.run_id).info.status == "FINISHED"
    children = client.search_runs([exp_id], filter_string="tags.mode = 'eval'")
    assert len(children) == 1 and children[0].info.status == "FAILED"
    assert children[0].data.tags[tracking.mlflow.PARENT_TAG] == train_run.info.run_id
    assert tracking.find_latest_training_run(exp_id) == train_run.info.run_id  # ckpt=latest still finds it

    monkeypatch.undo()
    results = evaluate.run(compose(eval_overrides), RunContext(tmp_path / "eval2", eval_overrides, ""))
    assert client.get_run(train_run.info.run_id).info.status == "FINISHED"
    ok = client.search_runs([exp_id], filter_string="tags.mode = 'eval' and attributes.status = 'FINISHED'")
    assert len(ok) == 1 and ok[0].data.tags[tracking.mlflow.PARENT_TAG] == train_run.info.run_id
    assert {"eval"} == {a.path for a in client.list_artifacts(ok[0].info.run_id)}
    # the test scores also land on the training run, so training runs compare by them in the UI
    scores = client.get_run(train_run.info.run_id).data.metrics
    assert scores["test_mean_foreground_dice"] == pytest.approx(results["mean_foreground_dice"])
