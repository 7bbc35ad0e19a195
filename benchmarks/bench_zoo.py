"""Model zoo benchmark (`make zoo-bench`): every `model=<name>` at 256x256 on the synthetic data.

Per model, with its conf/model/<name>.yaml as it is (256x256, the default recipe of `train.*`):
  parameters     `model.count_params()`
  GFLOP / image  forward pass of one image: 2 x the multiply-adds of every Conv2D, depthwise conv,
                 transposed conv, MatMul, BatchMatMul and Einsum of the traced float32 graph
                 (elementwise ops, norms and softmax left out, as `benchlib.conv_flops`)
  train img/s    `train_on_batch` steps at `train.batch_size` in `train.precision` (auto), compiled as
                 `mode=train` compiles, after one untimed step (tracing)
  test dice      `flexseg model=<name> train.time_limit=BUDGET` (epochs high enough never to end
                 first; no per-epoch pictures), then `mode=eval` of its best checkpoint: the test mean
                 foreground dice at each image's own size (evaluation.csv), as `benchmarks/race.py`
  epochs         the epochs that training completed in the budget

    python benchmarks/bench_zoo.py [--budget 120] [--models flexunet,unet3plus] [--steps 5]
        [--json zoo.json] [--keep DIR] [--skip-train]

Prints a markdown table (the README's "Model zoo" table). Non-zero exit when a run fails.
"""

from __future__ import annotations

import argparse
import math
import os
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (after the path setup; puts the repo on sys.path too)
from race import FIGURE, EPOCHS, RaceError, flexseg, read_epochs, read_evaluation  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# No per-epoch pictures: the budget goes to training, as for every model alike.
TRAIN_OVERRIDES = ["dataset=default", "callbacks.epoch_change_infer=false", "callbacks.epoch_change_tiled=false",
                   "callbacks.plots=false"]


@dataclass
class ZooRow:
    """One model's figures."""

    model: str
    params: int
    gflop: float
    images_per_s: float
    dice: float = math.nan
    epochs: int = 0


def compose_config(model: str) -> Any:
    """The validated `Config` of `flexseg model=<model> dataset=default` (num_classes resolved)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from flexseg.config.store import CONF_DIR, register_configs
    from flexseg.config.validation import validate_config

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        dcfg = compose("config", overrides=[f"model={model}", "dataset=default"])
    return validate_config(OmegaConf.to_object(dcfg))


def _einsum_flops(equation: str, shapes: list[list[int]]) -> float:
    """2 x the product of every index's size in an einsum (each output element sums over the rest)."""
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, shape in zip(inputs, shapes):
        letters = letters.replace("...", "")
        for letter, size in zip(letters[::-1], shape[::-1]):
            if letter in string.ascii_letters:
                sizes[letter] = int(size)
    return 2.0 * math.prod(sizes.values())


def graph_flops(model: Any) -> float:
    """Forward FLOPs of one image through `model`: 2 x multiply-adds of its conv / matmul / einsum ops."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    _, h, w, c = model.input_shape
    spec = tf.TensorSpec((1, h, w, c), tf.float32)
    graph = convert_variables_to_constants_v2(tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)).graph
    total = 0.0
    for op in graph.get_operations():
        shapes = [t.shape.as_list() for t in op.inputs]
        out = op.outputs[0].shape.as_list() if op.outputs else []
        if op.type == "Conv2D":
            kh, kw, cin, cout = shapes[1]
            total += 2.0 * math.prod(out[1:3]) * kh * kw * cin * cout
        elif op.type == "DepthwiseConv2dNative":
            kh, kw, cin, mult = shapes[1]
            total += 2.0 * math.prod(out[1:3]) * kh * kw * cin * mult
        elif op.type == "Conv2DBackpropInput":  # a transposed conv: every input pixel scatters a kernel
            kh, kw, cout, cin = shapes[1]
            total += 2.0 * math.prod(shapes[2][1:3]) * kh * kw * cin * cout
        elif op.type == "MatMul":
            a, b = shapes[0], shapes[1]
            m, k = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
            n = b[0] if op.get_attr("transpose_b") else b[1]
            total += 2.0 * m * k * n
        elif op.type in ("BatchMatMulV2", "BatchMatMulV3", "BatchMatMul"):
            k = shapes[0][-2] if op.get_attr("adj_x") else shapes[0][-1]
            total += 2.0 * math.prod(out) * k
        elif op.type == "Einsum":
            total += _einsum_flops(op.get_attr("equation").decode(), shapes)
    return total


def measure(model_name: str, steps: int) -> ZooRow:
    """Parameters, GFLOP per image and train images/s of `model=<model_name>` as configured."""
    import keras

    from flexseg.modes.common import compile_model
    from flexseg.models.registry import build_model
    from flexseg.training.devices import resolve_precision

    cfg = compose_config(model_name)
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model)
    params, flops = model.count_params(), graph_flops(model)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(resolve_precision(cfg.train.precision).value)
    try:
        keras.utils.set_random_seed(0)
        trained = compile_model(build_model(cfg.model), cfg)
        batch = cfg.train.batch_size
        times = benchlib.time_train_steps(trained, batch, steps)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    keras.backend.clear_session()
    return ZooRow(model_name, params, flops / 1e9, steps * batch / sum(times))


def train_and_evaluate(row: ZooRow, budget: float, work: Path) -> None:
    """Train `row.model` for `budget` s through the CLI in `work`, evaluate it; fill dice and epochs."""
    out = work / row.model
    common = [f"model={row.model}", *TRAIN_OVERRIDES, f"tracking.uri=sqlite:///{out / 'mlflow.db'}"]
    timeout = 3 * budget + 900
    flexseg([*common, "mode=train", f"train.epochs={EPOCHS}", f"train.time_limit={budget:g}",
             f"hydra.run.dir={out / 'train'}"], work, [], timeout)
    ckpt = out / "train" / "checkpoints" / "best.keras"
    flexseg([*common, "mode=eval", f"ckpt={ckpt}", f"hydra.run.dir={out / 'eval'}"], work, [], timeout)
    row.dice = read_evaluation(out / "eval" / "evaluation.csv").get(FIGURE, math.nan)
    row.epochs = read_epochs(out / "train" / "checkpoints" / "state.json")


def table(rows: list[ZooRow], budget: Optional[float]) -> str:
    """The markdown table of every model (the README's)."""
    trained = f"test dice after {budget:g} s" if budget else "test dice"
    lines = [f"| model | parameters | GFLOP / image | train images/s | {trained} | epochs |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.params / 1e6:.2f} M | {r.gflop:.2f} | {r.images_per_s:.2f} | "
              f"{'-' if math.isnan(r.dice) else f'{r.dice:.4f}'} | {r.epochs or '-'} |" for r in rows]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    from flexseg.config.models import MODEL_SCHEMAS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per model (train.time_limit)")
    parser.add_argument("--models", default=",".join(MODEL_SCHEMAS), help="comma-separated model names")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps for images/s")
    parser.add_argument("--skip-train", action="store_true", help="parameters, GFLOP and images/s only")
    parser.add_argument("--json", type=Path, default=None, help="write the figure JSON here")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs under this folder (default: a temp one)")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODEL_SCHEMAS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_SCHEMAS)}")

    rows: list[ZooRow] = []
    try:
        with benchlib.work_folder(args.keep, "flexseg-zoo-") as work:
            for name in models:
                row = measure(name, args.steps)
                print(f"{name}: {row.params / 1e6:.2f} M parameters, {row.gflop:.2f} GFLOP/image, "
                      f"{row.images_per_s:.2f} train images/s", flush=True)
                if not args.skip_train:
                    train_and_evaluate(row, args.budget, work)
                    print(f"  test dice {row.dice:.4f} after {args.budget:g} s "
                          f"({row.epochs} epoch{'s' * (row.epochs != 1)})", flush=True)
                rows.append(row)
    except RaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    text = table(rows, None if args.skip_train else args.budget)
    print("\n" + text)
    if args.json:
        figures = [benchlib.make_row(f"zoo {r.model}: test dice", r.dice, "dice") for r in rows]
        benchlib.write_json(args.json, "Model zoo at 256x256 on the synthetic data", figures, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
