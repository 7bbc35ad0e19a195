"""Sweep building blocks without training: search spaces, the objective, thread budgets, summaries."""

from __future__ import annotations

import csv
import math
import threading
from pathlib import Path

import pytest

from flexseg.config.choices import Direction
from flexseg.errors import FlexsegError
from flexseg.sweep.job import thread_budget
from flexseg.sweep.objective import best_epoch, counterpart, pick, resolve_direction
from flexseg.sweep.optuna_sweeper import default_storage, default_study_name
from flexseg.sweep.report import cv_metrics, pick_best, summary_files
from flexseg.sweep.space import format_value, parse_space, trial_overrides


def test_search_expressions_become_optuna_distributions() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = parse_space({"train.learning_rate": "tag(log, interval(1e-5, 1e-2))", "model.base_filters": "choice(8, 16)",
                         "model.dropout_rate": "interval(0.0, 0.3)", "model.num_layers": "range(3, 7)",
                         "augment": "choice(none, light)"})
    assert space["train.learning_rate"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert space["model.base_filters"] == CategoricalDistribution([8, 16])
    assert space["model.dropout_rate"] == FloatDistribution(0.0, 0.3)
    assert space["model.num_layers"] == IntDistribution(3, 6)  # range's end is exclusive, as in Python
    assert space["augment"] == CategoricalDistribution(["none", "light"])


def test_a_fixed_value_in_the_search_space_names_the_key() -> None:
    with pytest.raises(FlexsegError, match=r"hydra.sweeper.params.model.base_filters='8' is one value"):
        parse_space({"model.base_filters": "8"})


def test_trial_values_round_trip_through_hydra_overrides() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = {"train.learning_rate": 0.00123, "model.normalization": "instance", "train.loss": None,
              "callbacks.plots": False, "callbacks.tiled_image": "a b/c's.png", "model.base_filters": 8}
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(trial_overrides(params))}
    assert parsed == params
    assert format_value(True) == "true" and format_value(1e-4) == "0.0001"


def test_objective_direction_and_counterparts() -> None:
    assert resolve_direction("val_dice", Direction.auto) == "maximize"
    assert resolve_direction("val_loss", Direction.auto) == "minimize"
    assert resolve_direction("val_dice", Direction.minimize) == "minimize"
    assert counterpart("val_dice") == "mean_foreground_dice" and counterpart("val_dice_tumor") == "dice_tumor"
    assert counterpart("val_loss") == "loss"
    assert pick({"mean_foreground_dice": 0.7, "loss": 0.2}, "val_loss") == 0.2
    history = [{"epoch": 1, "val_dice": 0.2}, {"epoch": 2, "val_dice": math.nan}, {"epoch": 3, "val_dice": 0.5},
               {"epoch": 4, "val_dice": 0.4}]
    assert best_epoch(history, "val_dice", maximize=True)["epoch"] == 3
    assert best_epoch(history, "val_dice", maximize=False)["epoch"] == 1
    assert best_epoch(history, "val_iou", maximize=True) is None


@pytest.mark.parametrize("launcher, expected", [
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, 4),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}, 1),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 16}, 1),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 6}, 6),
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, None),
])
def test_parallel_jobs_share_the_cores(launcher: dict, expected: int | None) -> None:
    assert thread_budget(launcher, cores=8) == expected


def test_the_same_command_names_the_same_study(tmp_path: Path) -> None:
    a = default_study_name("demo", "demo_optuna", ["train.epochs=2", "experiment=demo"], {"x": "choice(1,2)"})
    b = default_study_name("demo", "demo_optuna", ["experiment=demo", "train.epochs=2"], {"x": "choice(1,2)"})
    c = default_study_name("demo", "demo_optuna", ["experiment=demo", "train.epochs=3"], {"x": "choice(1,2)"})
    assert a == b != c and a.startswith("demo-demo_optuna-")
    assert default_storage(f"sqlite:///{tmp_path}/store/mlflow.db") == f"sqlite:///{tmp_path}/store/optuna.db"


def _row(job: int, state: str, value: float, lr: str) -> dict:
    return {"job": job, "state": state, "objective": value, "train.learning_rate": lr, "seconds": 1.0,
            "run_id": f"r{job}", "error": "boom" if state == "FAIL" else ""}


def test_best_and_leaderboard_follow_the_direction(tmp_path: Path) -> None:
    rows = [_row(0, "COMPLETE", 0.5, "1e-3"), _row(1, "FAIL", math.nan, "1e-2"), _row(2, "COMPLETE", 0.7, "1e-4"),
            _row(3, "PRUNED", 0.9, "1e-5")]
    assert pick_best(rows, maximize=True)["job"] == 2  # a pruned trial's partial value never wins
    assert pick_best(rows, maximize=False)["job"] == 0
    files = summary_files(rows, ["train.learning_rate"], "val_dice", "maximize", tmp_path)
    with files[0].open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["job"] for r in table][:2] == ["2", "0"]
    assert table[0]["train.learning_rate"] == "1e-4" and {r["state"] for r in table[2:]} == {"FAIL", "PRUNED"}
    assert files[1].name == "objective_by_job.png" and files[1].stat().st_size > 1000


def test_cross_validation_statistics() -> None:
    folds = [{"metrics": {"objective": v, "best_val_dice_tumor": v - 0.1, "best_val_loss": 1.0}} for v in (0.6, 0.8)]
    stats = cv_metrics(folds)
    assert stats["cv_mean_objective"] == pytest.approx(0.7)
    assert stats["cv_std_objective"] == pytest.approx(0.14142, abs=1e-4)  # sample std over folds
    assert stats["cv_mean_val_dice_tumor"] == pytest.approx(0.6)
    assert "cv_mean_val_loss" not in stats


def test_parallel_jobs_generate_the_synthetic_dataset_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flexseg.config.schemas import SyntheticConfig
    from flexseg.data.synthetic import MARKER, build_synthetic_dataset

    spec = SyntheticConfig(image_size=32, num_train=4, num_valid=2, num_test=2, num_large=1, large_size=64)
    colors = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
    errors: list[BaseException] = []

    def build() -> None:
        try:
            build_synthetic_dataset(tmp_path / "synthetic", spec, colors)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    caplog.set_level("INFO", logger="flexseg.data.synthetic")
    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum("Generating the synthetic dataset" in r.message for r in caplog.records) == 1
    assert (tmp_path / "synthetic" / MARKER).is_file()
    assert len(list((tmp_path / "synthetic" / "train" / "images").iterdir())) == 4
