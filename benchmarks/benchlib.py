"""What the benchmark figure scripts share: the figure JSON protocol, a table printer, FLOP counting,
the two reference models and a timed training step.

Figure protocol (`make bench`, benchmarks/bench.py): each `benchmarks/bench_<x>.py` takes
`--json PATH` and writes, atomically (temp file + os.replace),

    {"title": str, "rows": [{"figure": str, "value": float, "unit": str, "baseline": float | null,
                             "ratio": float | null, "target": str | null, "ok": bool | null}],
     "text": optional markdown}

and prints a human table. `ratio` is value / baseline; `target` says what the figure must reach
(e.g. ">= 65 % of the conv limit") and `ok` whether it does. This module imports no TensorFlow at
import time: the orchestrator and its tests use it without loading TF.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The two reference configs of issue 14 (ModelConfig keyword arguments at 512x512, 6 classes).
REFERENCE_CONFIGS: dict[str, dict[str, Any]] = {
    # The reference normalises nothing (flexseg's default recipe uses instance normalisation).
    "a": dict(base_filters=16, base_kernels=9, num_layers=8, dropout_rate=0.04, normalization="none"),  # 125.0 M, 115.7 GFLOP
    "b": dict(base_filters=16, base_kernels=3, num_layers=6, dropout_rate=0.05, normalization="none"),  # 7.78 M, 30.0 GFLOP
}
CONV_LIMIT_FP32 = "conv limit fp32"  # the figure name of the fp32 conv limit in bench_limits' JSON


@contextlib.contextmanager
def work_folder(keep: Optional[Path], prefix: str) -> Iterator[Path]:
    """The folder a benchmark trains in: `keep` (left in place) or a new temp folder, removed afterwards."""
    base = (keep or Path(tempfile.mkdtemp(prefix=prefix))).resolve()
    base.mkdir(parents=True, exist_ok=True)
    try:
        yield base
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)


def make_row(figure: str, value: float, unit: str, baseline: Optional[float] = None,
             target: Optional[str] = None, ok: Optional[bool] = None) -> dict[str, Any]:
    """One figure row; ratio = value / baseline when there is a (non-zero) baseline."""
    ratio = value / baseline if baseline else None
    return {"figure": figure, "value": float(value), "unit": unit,
            "baseline": None if baseline is None else float(baseline),
            "ratio": None if ratio is None else float(ratio), "target": target, "ok": ok}


def write_json(path: str | Path, title: str, rows: Sequence[Mapping[str, Any]], text: Optional[str] = None) -> None:
    """Write a figure JSON atomically: a temp file in the same folder, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"title": title, "rows": [dict(r) for r in rows]}
    if text:
        payload["text"] = text
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temp file + os.replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fmt(value: Optional[float], digits: int = 3) -> str:
    """A number in `digits` significant digits, '' for None."""
    if value is None:
        return ""
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def _ok(ok: Optional[bool]) -> str:
    return "" if ok is None else ("yes" if ok else "NO")


def table_lines(rows: Iterable[Mapping[str, Any]], markdown: bool = False) -> list[str]:
    """Rows as aligned text lines (or a markdown table): figure, value, unit, baseline, ratio, target, ok."""
    head = ["figure", "value", "unit", "baseline", "ratio", "target", "ok"]
    body = [[str(r["figure"]), fmt(r.get("value")), str(r.get("unit", "")), fmt(r.get("baseline")),
             fmt(r.get("ratio")), str(r.get("target") or ""), _ok(r.get("ok"))] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 2 + ["---"] * 4) + "|"]
        return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]]


def print_table(title: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Print a figure's title and its rows as an aligned table."""
    print(f"== {title}")
    for line in table_lines(rows):
        print(line)
    sys.stdout.flush()


def _all_layers(model: Any) -> list[Any]:
    """The layers of `model`, those of nested models included (depth first)."""
    found = []
    for layer in model.layers:
        found += _all_layers(layer) if hasattr(layer, "layers") else [layer]
    return found


def conv_flops(model: Any) -> float:
    """Forward FLOPs per image of the model's Conv2D and Conv2DTranspose layers (multiply-add = 2).

    Conv2D: 2 * Hout * Wout * kh * kw * Cin * Cout (dilation costs nothing extra). Conv2DTranspose:
    every input pixel scatters a kh x kw x Cout patch, 2 * Hin * Win * kh * kw * Cin * Cout (for the
    UNet's 2x2 stride-2 upsampling that is 2 * Hout * Wout * Cin * Cout). Bias adds, activations,
    pooling and the rest are left out (< 0.2 % of a FlexUNet). Groups divide Cin.
    """
    import keras

    total = 0.0
    for layer in _all_layers(model):
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            continue
        kh, kw = layer.kernel_size
        cin = layer.input.shape[-1] // getattr(layer, "groups", 1)
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, _ = layer.input.shape
        else:
            _, h, w, _ = layer.output.shape
        total += 2.0 * h * w * kh * kw * cin * layer.filters
    return total


def build_reference(name: str, size: int = 512, num_classes: int = 6) -> Any:
    """The FlexUNet of reference config `name` ('a' or 'b') at size x size, seeded."""
    import keras

    from flexseg.config.choices import Normalization
    from flexseg.config.schemas import ModelConfig
    from flexseg.models.registry import build_model

    keras.utils.set_random_seed(0)
    values = {**REFERENCE_CONFIGS[name], "normalization": Normalization(REFERENCE_CONFIGS[name]["normalization"])}
    return build_model(ModelConfig(image_height=size, image_width=size, num_classes=num_classes, **values))


def compile_like_flexseg(model: Any, jit_compile: bool | str = "auto") -> Any:
    """Compile as `flexseg.modes.common.compile_model` does with the default `train.*` optimizer,
    categorical cross-entropy, the default metrics, `jit_compile` (auto: off on CPU)."""
    from flexseg.config.schemas import TrainConfig
    from flexseg.training.losses import get_loss
    from flexseg.training.metrics import build_metrics
    from flexseg.training.optimizers import build_optimizer

    t = TrainConfig()
    k = model.output.shape[-1]
    names = ["background"] + [f"class{i}" for i in range(1, k)]
    model.compile(optimizer=build_optimizer(t.optimizer, t.learning_rate, None, None, None, t.momentum, t.nesterov),
                  loss=get_loss("categorical_crossentropy"), metrics=build_metrics(t.metrics, k, names),
                  jit_compile=jit_compile)
    return model


def random_batch(model: Any, batch: int, seed: int = 0) -> tuple[Any, Any]:
    """(x, y): uniform images in [0, 1] and one-hot random labels shaped for `model`, float32 numpy."""
    import numpy as np

    _, h, w, c = model.input.shape
    k = model.output.shape[-1]
    rng = np.random.default_rng(seed)
    x = rng.random((batch, h, w, c), dtype=np.float32)
    y = np.eye(k, dtype=np.float32)[rng.integers(0, k, (batch, h, w))]
    return x, y


def time_train_steps(model: Any, batch: int, steps: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `steps` `train_on_batch` calls, after `warmup` untimed ones (tracing)."""
    x, y = random_batch(model, batch)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return times


def train_step_rate(name: str, precision: str, size: int, batch: int, steps: int,
                    jit_compile: bool | str = "auto") -> tuple[float, int, float]:
    """(images/s, parameters, forward FLOPs per image) of `steps` training steps of reference config
    `name` built in Keras policy `precision` (the global policy is restored afterwards)."""
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = compile_like_flexseg(build_reference(name, size), jit_compile)
        times = time_train_steps(model, batch, steps)
        return steps * batch / sum(times), model.count_params(), conv_flops(model)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a figure JSON."""
    return list(json.loads(Path(path).read_text())["rows"])


def row_value(rows: Iterable[Mapping[str, Any]], figure: str) -> Optional[float]:
    """The value of the row named `figure`, None when absent."""
    return next((float(r["value"]) for r in rows if r["figure"] == figure), None)
