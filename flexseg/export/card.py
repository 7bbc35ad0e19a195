"""The model card of an export: `model_card.json` (what a program reads) and `README.md` (what a person reads).

Classes and colours, input size and channels, preprocessing, tiling defaults, training data (path and
pairs per split), the checkpoint's evaluation scores, flexseg version and git commit. Pure: the
caller gathers the facts (`flexseg.export.bundle`).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional

from flexseg.config.schemas import ClassConfig, DatasetConfig
from flexseg.data.discovery import build_split
from flexseg.errors import FlexsegError
from flexseg.inference.serving import ServingOptions

SCALING = ("uint8 / 255, uint16 / 65535; float images in [0, 1] as they are (larger floats divided by their "
           "maximum); gray repeated to RGB, alpha dropped")


def split_sizes(dataset: DatasetConfig) -> dict[str, Optional[int]]:
    """Pairs per split of the dataset as configured (None for a split that is missing or unreadable)."""
    sizes: dict[str, Optional[int]] = {}
    for split in ("train", "valid", "test"):
        try:
            sizes[split] = len(build_split(dataset, split))
        except (FlexsegError, OSError):
            sizes[split] = None
    return sizes


def read_evaluation_csv(path: Path) -> dict[str, float]:
    """The `key,value` lines of a `mode=eval` report ({} when the file is absent)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row[0]: float(row[1]) for row in csv.reader(fh) if len(row) == 2 and row[1] not in ("", "value")}


def build_card(
    *,
    name: str,
    classes: list[ClassConfig],
    input_size: tuple[int, int, int],
    num_outputs: int,
    options: ServingOptions,
    dataset: DatasetConfig,
    scores: dict[str, float],
    scores_source: str,
    checkpoint: Path,
    run_id: Optional[str],
    versions: dict[str, str],
) -> dict[str, Any]:
    """The card as a JSON-ready dict.

    Args:
        name: What the model is called (`tracking.register_as`, else the experiment).
        classes: `dataset.classes`, index order.
        input_size: (height, width, channels) of the model.
        num_outputs: K output channels (1: sigmoid, foreground above 0.5).
        options: Colour and tiling settings the MLflow model applies.
        dataset: The training data's config (root, split paths).
        scores: Evaluation scores of the checkpoint (finite values kept).
        scores_source: Where `scores` come from.
        checkpoint: The exported `.keras` file.
        run_id: The MLflow run the export is logged into.
        versions: `flexseg`, `git_commit` (and any other pins worth recording).
    """
    height, width, channels = input_size
    o = options
    return {
        "name": name,
        **versions,
        "checkpoint": str(checkpoint),
        "mlflow_run_id": run_id,
        "classes": [{"index": i, "name": c.name, "color": list(c.color),
                     "display_color": list(c.display_color or c.color)} for i, c in enumerate(classes)],
        "output": {"channels": num_outputs, "activation": "sigmoid" if num_outputs == 1 else "softmax",
                   "labels": "foreground where p > 0.5" if num_outputs == 1 else "argmax over classes"},
        "input": {"height": height, "width": width, "channels": channels},
        "preprocessing": {"color_order": o.color_order, "color_converter": o.color_converter, "gamma": o.gamma,
                          "image_interpolation": o.interpolation, "scaling": SCALING},
        "tiling": {"tile_size": o.tile_size, "overlap": o.overlap, "blend": o.blend, "batch_size": o.tile_batch_size,
                   "tta": o.tta, "applies_to": f"images larger than {width}x{height} in either side"},
        "training_data": {"dataset": dataset.name, "root": str(Path(dataset.root).resolve()),
                          "pairs": split_sizes(dataset)},
        "evaluation": {"source": scores_source,
                       "scores": {k: v for k, v in sorted(scores.items()) if math.isfinite(v)}},
    }


def render_readme(card: dict[str, Any]) -> str:
    """The card as a short Markdown page."""
    inp, tiling, pre = card["input"], card["tiling"], card["preprocessing"]
    lines = [
        f"# {card['name']}: flexseg segmentation model",
        "",
        f"flexseg {card.get('flexseg', '?')} (git {card.get('git_commit', '?')}), checkpoint `{card['checkpoint']}`"
        + (f", MLflow run `{card['mlflow_run_id']}`" if card.get("mlflow_run_id") else "") + ".",
        "",
        "## Classes",
        "",
        "| index | name | mask colour (RGB) |",
        "|---|---|---|",
        *(f"| {c['index']} | {c['name']} | {tuple(c['color'])} |" for c in card["classes"]),
        "",
        "## Input and preprocessing",
        "",
        f"Model input {inp['width']}x{inp['height']} px, {inp['channels']} channel(s). Pixels: {pre['scaling']}; "
        f"colour order {pre['color_order']}, colour converter {pre['color_converter'] or 'none'}, "
        f"gamma {pre['gamma'] or 'none'}, resizing {pre['image_interpolation']}.",
        f"Images up to the model size are predicted at the model size and resized back; larger ones are tiled "
        f"({tiling['tile_size']} px tiles, overlap {tiling['overlap']}, {tiling['blend']} blending"
        f"{', flip TTA' if tiling['tta'] else ''}).",
        "",
        "## Training data",
        "",
        f"Dataset `{card['training_data']['dataset']}` at `{card['training_data']['root']}`; pairs: "
        + ", ".join(f"{k} {v if v is not None else 'n/a'}" for k, v in card["training_data"]["pairs"].items()) + ".",
        "",
        "## Evaluation",
        "",
        *([f"From {card['evaluation']['source']}:", "", "| score | value |", "|---|---|",
           *(f"| {k} | {v:.4f} |" for k, v in card["evaluation"]["scores"].items())]
          if card["evaluation"]["scores"] else ["No evaluation found: run `flexseg mode=eval` with this checkpoint."]),
        "",
        "## Files and use",
        "",
        "- `mlflow_model/`: `mlflow.pyfunc.load_model(path).predict(image)` with (H, W, 3) uint8 RGB pixels of any "
        "size, a batch (N, H, W, 3), or a DataFrame with an `image` column of PNG/JPEG bytes; returns label maps "
        "(`params={\"output\": \"probabilities\"}` for probabilities). Serve: "
        "`mlflow models serve -m mlflow_model --env-manager local`.",
        "- `saved_model/`: TensorFlow SavedModel of the network alone; signatures `serve` (float32 model input "
        "in [0, 1], preprocessed as above) and `serve_uint8` (the same input as uint8, divided by 255), (N, "
        f"{inp['height']}, {inp['width']}, {inp['channels']}) -> (N, {inp['height']}, {inp['width']}, "
        f"{card['output']['channels']}) probabilities.",
        *([f"- `model.onnx`: the network alone in ONNX (same input as `serve`); ONNX Runtime matches Keras within "
           f"{card['onnx']['max_abs_difference']:.1g}."] if card.get("onnx") else []),
        "- `model_card.json`: this card.",
        "",
    ]
    return "\n".join(lines)


def card_json(card: dict[str, Any]) -> str:
    return json.dumps(card, indent=2) + "\n"
