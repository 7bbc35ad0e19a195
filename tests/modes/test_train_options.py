"""Training options: optimizers, learning-rate schedules, precision, XLA switch, repeatable seeds."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest
from conftest import TINY, compose
from omegaconf import OmegaConf

from flexseg.training.callbacks import read_state
from flexseg.cli import RunContext
from flexseg.errors import FlexsegError
from flexseg.modes import common, train
from flexseg.training.optimizers import build_optimizer, build_schedule


def test_optimizers_by_name_with_their_options() -> None:
    sgd = build_optimizer("sgd", 0.1, clipnorm=1.0, momentum=0.8, nesterov=True)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert (sgd.momentum, sgd.nesterov, sgd.clipnorm, sgd.clipvalue) == (0.8, True, 1.0, None)
    adamw = build_optimizer("adamw", 1e-3, clipvalue=0.4, weight_decay=0.01)
    assert isinstance(adamw, keras.optimizers.AdamW) and (adamw.clipvalue, adamw.weight_decay) == (0.4, 0.01)
    assert isinstance(build_optimizer("adam", 1e-3), keras.optimizers.Adam)
    with pytest.raises(ValueError, match="'rmsprop' is not a valid OptimizerName"):  # the config cannot hold it
        build_optimizer("rmsprop", 1e-3)
    with pytest.raises(FlexsegError, match="both set"):
        build_optimizer("adam", 1e-3, clipvalue=1.0, clipnorm=1.0)


def test_schedules_decay_to_the_end_rate() -> None:
    cosine = build_schedule("cosine", 1.0, total_steps=10, end_learning_rate=0.1)
    assert [round(float(cosine(s)), 4) for s in (0, 5, 10)] == [1.0, 0.55, 0.1]
    linear = build_schedule("polynomial", 1.0, total_steps=10, end_learning_rate=0.0, power=1.0)
    assert [round(float(linear(s)), 4) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]
    assert build_schedule("constant", 0.3, 10) == 0.3
    with pytest.raises(ValueError, match="'step' is not a valid LRSchedule"):
        build_schedule("step", 1.0, 10)
    with pytest.raises(FlexsegError, match="train.end_learning_rate=2.0"):
        build_schedule("cosine", 1.0, 10, end_learning_rate=2.0)


def test_training_optimizer_spans_all_epochs() -> None:
    cfg = compose(["train.optimizer=sgd", "train.lr_schedule=polynomial", "train.epochs=5", "train.learning_rate=0.5"])
    optimizer = common.build_training_optimizer(cfg, steps_per_epoch=4)
    schedule = optimizer._learning_rate
    assert isinstance(optimizer, keras.optimizers.SGD) and schedule.decay_steps == 20


def test_precision_and_jit_choices() -> None:
    """Bad values stop at composition (tests/config); the chosen ones reach Keras."""
    assert common.jit_compile_option(compose([]).train.jit_compile) == "auto"
    assert common.jit_compile_option(compose(["train.jit_compile=true"]).train.jit_compile) is True
    assert common.jit_compile_option(compose(["train.jit_compile=false"]).train.jit_compile) is False
    with common.precision_policy(compose(["train.precision=mixed_bfloat16"]).train.precision):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"


def _run(tmp_path: Path, name: str, extra: list[str]) -> Path:
    overrides = [*TINY, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"dataset.root={tmp_path}/synthetic",
                 "tracking.experiment=options", "callbacks=minimal", "train.metrics=[dice]", *extra]
    cfg = compose(overrides)
    train.run(cfg, RunContext(tmp_path / name, overrides, OmegaConf.to_yaml(OmegaConf.structured(cfg))))
    return tmp_path / name


def test_seed_makes_cpu_training_repeatable(tmp_path: Path) -> None:
    runs = [_run(tmp_path, n, ["seed=7", "train.epochs=2"]) for n in "ab"]
    histories = [read_state(r / "checkpoints" / "state.json").history for r in runs]
    assert histories[0] == histories[1]
    other = read_state(_run(tmp_path, "c", ["seed=8", "train.epochs=1"]) / "checkpoints" / "state.json").history
    assert other[0]["loss"] != histories[0][0]["loss"]


def test_mixed_bfloat16_with_cosine_schedule_trains_and_restores_the_policy(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, "mixed", ["train.precision=mixed_bfloat16", "train.lr_schedule=cosine",
                                      "train.jit_compile=false", "train.optimizer=adamw", "train.epochs=2"])
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.models.load_model(run_dir / "checkpoints" / "last.keras", compile=False, safe_mode=True)
    assert model.layers[1].dtype_policy.name == "mixed_bfloat16" and model.output.dtype == "float32"
    history = read_state(run_dir / "checkpoints" / "state.json").history
    assert history[1]["lr"] < history[0]["lr"]  # cosine decays within the run
    assert all(row["loss"] == row["loss"] for row in history)  # finite, not NaN


def test_summary_keeps_the_best_monitored_value_beside_the_objective_epochs_metrics(tmp_path: Path) -> None:
    from flexseg.training.callbacks import TrainingState

    cfg = compose(["callbacks.monitor=val_loss", "train.objective=val_dice"])
    history = [{"epoch": 1, "val_loss": 0.30, "val_dice": 0.70}, {"epoch": 2, "val_loss": 0.35, "val_dice": 0.80}]
    results = train._summary(cfg, TrainingState(epoch=2, history=history), tmp_path, log_to_run=False)
    assert results["best_val_loss"] == 0.30  # the lowest val_loss, not epoch 2's
    assert (results["objective"], results["best_val_dice"], results["best_epoch"]) == (0.80, 0.80, 2.0)
