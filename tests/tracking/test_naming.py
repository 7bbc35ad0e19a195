"""Run names tell the jobs of a sweep apart: `<experiment>/<mode>`, the overrides that matter, the time."""

from __future__ import annotations

from datetime import datetime

from flexseg.tracking.naming import run_name

WHEN = datetime(2026, 12, 3, 14, 5)


def test_sweep_jobs_get_names_that_differ_and_leave_out_paths_and_settings() -> None:
    common = ["dataset.root=/data/Lizard", "tracking.uri=sqlite:////tmp/mlflow.db", "hydra.job.chdir=false",
              "experiment=lizard", "mode=train", "model.num_layers=8"]
    names = [run_name("lizard", "train", [f"train.learning_rate={lr}", *common], WHEN) for lr in ("1e-3", "1e-4")]
    assert names == ["lizard/train lr=1e-3 num_layers=8 12-03 14:05", "lizard/train lr=1e-4 num_layers=8 12-03 14:05"]


def test_eval_of_a_run_is_named_by_experiment_mode_and_time() -> None:
    name = run_name("demo", "eval", ["mode=eval", "ckpt=runs:/0123abcd", "dataset=demo"], WHEN)
    assert name == "demo/eval 12-03 14:05"


def test_keys_keep_their_group_when_the_short_names_clash_and_long_lists_are_cut() -> None:
    name = run_name("x", "tiled", ["train.batch_size=4", "tiling.batch_size=8", "+seed=3", "seed=4"], WHEN)
    assert name == "x/tiled train.batch_size=4 tiling.batch_size=8 seed=4 12-03 14:05"
    many = run_name("x", "train", [f"model.key{i}=value{i}" for i in range(30)], WHEN)
    assert many.startswith("x/train key0=value0 key1=value1") and "… 12-03 14:05" in many and len(many) < 110
