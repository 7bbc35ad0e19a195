"""benchmarks/benchlib.py: the FLOP count of a model, the figure JSON, the limits figure (no benchmark runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_limits  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
import benchlib  # noqa: E402


def test_conv_flops_counts_convs_and_transposed_convs_by_hand() -> None:
    import keras

    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    y = keras.layers.Conv2D(5, 1, dilation_rate=1)(y)
    y = keras.layers.MaxPooling2D(2)(y)  # free
    y = keras.layers.Conv2DTranspose(2, 2, strides=2)(y)  # 4x4 in: each input pixel scatters a 2x2x2 patch
    model = keras.Model(x, y)
    by_hand = 2 * 8 * 8 * (3 * 3 * 3) * 4 + 2 * 8 * 8 * 4 * 5 + 2 * 4 * 4 * (2 * 2 * 5) * 2
    assert benchlib.conv_flops(model) == by_hand


def test_reference_config_b_costs_30_gflop_per_512_forward_scaled_from_64() -> None:
    model = benchlib.build_reference("b", size=64)
    flops_512 = benchlib.conv_flops(model) * (512 / 64) ** 2  # every level scales with the pixel count
    assert flops_512 == 30_006_050_816
    assert round(model.count_params() / 1e6, 2) == 7.78


def test_write_json_is_the_figure_protocol_and_leaves_no_temp_file(tmp_path: Path) -> None:
    rows = [benchlib.make_row("x GFLOP/s", 60.0, "GFLOP/s", baseline=80.0, target=">= 65 %", ok=True),
            benchlib.make_row("y", 3.0, "s")]
    benchlib.write_json(tmp_path / "fig.json", "Title", rows, "some *markdown*")
    data = json.loads((tmp_path / "fig.json").read_text())
    assert data == {"title": "Title", "text": "some *markdown*", "rows": [
        {"figure": "x GFLOP/s", "value": 60.0, "unit": "GFLOP/s", "baseline": 80.0, "ratio": 0.75,
         "target": ">= 65 %", "ok": True},
        {"figure": "y", "value": 3.0, "unit": "s", "baseline": None, "ratio": None, "target": None, "ok": None}]}
    assert [p.name for p in tmp_path.iterdir()] == ["fig.json"]


def test_conv_limit_is_the_best_shape_over_every_way_of_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_limits, "bf16_native", lambda: False)
    shapes = [bench_limits.shape_name(*s) for s in bench_limits.SHAPES]
    onednn = {"variant": "oneDNN", "sgemm": {"float32": 120.0}, "conv": {"float32": dict.fromkeys(shapes, 70.0)}}
    eigen = {"variant": "Eigen", "sgemm": {"float32": 90.0}, "conv": {"float32": {**dict.fromkeys(shapes, 20.0),
                                                                                 shapes[-2]: 96.0}}}
    rows, text = bench_limits.build_figure([onednn, eigen])
    limit = next(r for r in rows if r["figure"] == benchlib.CONV_LIMIT_FP32)
    assert (limit["value"], limit["baseline"]) == (96.0, 120.0)  # the best shape anywhere; baseline: SGEMM
    assert benchlib.row_value(rows, f"conv fp32 {shapes[0]}") == 70.0
    assert not [r for r in rows if "bf16" in r["figure"]]
    assert "| oneDNN | Eigen |" in text and "emulates" in text
