"""`flexseg mode=eval`: checkpoint + test split -> evaluation report -> MLflow.

Writes `evaluation.csv` (`loss` and the reference metrics first, as the reference's file, then
per-class dice/IoU/precision/recall and their foreground means) and under `eval/`: per-image
scores, the confusion matrix (CSV + heatmap) and a gallery of the worst images.

Scores come at two resolutions. The unlabelled lines (`dice_<class>`, `mean_foreground_dice`, ...),
the confusion matrix and the gallery are at model resolution: the truth mask shrunk to the model
size with nearest neighbour, as training and its `val_*` metrics see it; `objective` is the
counterpart of `train.objective` among them (`val_dice` -> `mean_foreground_dice`). The `*_original_size` lines score what `mode=infer` delivers: predictions
resized back to each image's size (`flexseg.inference.predict.predict_full_size`) against the
truth mask read at its own size.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from flexseg import stopping, tracking
from flexseg.config.schemas import Config
from flexseg.context import RunContext
from flexseg.data.discovery import build_split
from flexseg.data.pipeline import build_dataset
from flexseg.data.readers import MaskOptions
from flexseg.data.mask_files import read_labels
from flexseg.inference.predict import Predictor, predict_full_size
from flexseg.modes import common
from flexseg.reporting import plots, viz
from flexseg.reporting.tables import WorstImages, write_confusion_csv, write_table
from flexseg.sweep.objective import pick
from flexseg.training.callbacks.timing import SignalStop
from flexseg.scoring import compute_confusion, compute_scores, image_scores, labels_from_probs, nanmean_foreground

log = logging.getLogger(__name__)
WORST_K = 8  # images in the gallery of the worst predictions
# Metrics whose evaluate() value goes on the reference lines of evaluation.csv.
REFERENCE_METRICS = ("dice_coef_multiclass", "dice_coef", "iou_coef", "sensitivity", "specificity")
SCORES = ("dice", "iou", "precision", "recall")
ORIGINAL = "_original_size"  # suffix of the scores at each image's own size


def _reference_rows(reference: dict[str, float], metric_names: list[str]) -> list[tuple[str, float]]:
    """`loss` then the reference function metrics, in `train.metrics` order (the reference file's head)."""
    rows = [("loss", float(reference["loss"]))]
    return rows + [(k, float(reference[k])) for k in metric_names if k in REFERENCE_METRICS and k in reference]


def _score_rows(confusion: np.ndarray, names: list[str], suffix: str = "") -> list[tuple[str, float]]:
    """Per-class dice/IoU/precision/recall lines, then their foreground means, names ending in `suffix`."""
    scores = compute_scores(confusion)
    rows = [(f"{m}_{n}{suffix}", float(v)) for m in SCORES for n, v in zip(names, scores[m])]
    return rows + [(f"mean_foreground_{m}{suffix}", nanmean_foreground(scores[m])) for m in SCORES]


def _truth_at_original_size(mask: str, options: MaskOptions, num_outputs: int) -> np.ndarray:
    """(H, W) uint8 class indices of a mask at its own size, as the model's target encodes them."""
    labels, _ = read_labels(mask, options)  # its unmatched pixels were checked when the pipeline read it
    return (labels > 0).astype(np.uint8) if num_outputs == 1 else labels


class _Scoring:
    """Confusion counts at model resolution and at original size, per-image rows, the worst images."""

    def __init__(self, names: list[str], palette: np.ndarray) -> None:
        self.names, self.palette = names, palette
        self.model_size = np.zeros((len(names), len(names)), np.int64)
        self.original = np.zeros_like(self.model_size)
        self.per_image: list[list[object]] = []
        self.worst = WorstImages(WORST_K)

    def add(self, name: str, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, truth_full: np.ndarray,
            pred_full: np.ndarray) -> None:
        """One image: (h, w, C) model input, (h, w) labels at model size, (H, W) labels at its size."""
        conf = compute_confusion(truth, pred, len(self.names))
        conf_full = compute_confusion(truth_full, pred_full, len(self.names))
        self.model_size += conf
        self.original += conf_full
        row, full = image_scores(conf, self.names), image_scores(conf_full, self.names)
        self.per_image.append([name, *row.values(), full["mean_foreground_dice"], full["mean_foreground_iou"]])
        self.worst.offer(row["mean_foreground_dice"], name, viz.to_uint8_rgb(image),
                         viz.colorize(truth, self.palette), viz.colorize(pred, self.palette))

    def header(self) -> list[str]:
        """Columns of the per-image table."""
        full = [f"mean_foreground_dice{ORIGINAL}", f"mean_foreground_iou{ORIGINAL}"]
        return ["image", *image_scores(self.model_size, self.names), *full]


def _score_split(ds: tf.data.Dataset, predictor: Predictor, masks: dict[str, str], options: MaskOptions,
                 scoring: _Scoring) -> None:
    """Predict every (image, target, path) batch once; score it at model and at original size."""
    for x, y, paths in ds:
        images = [p.decode() for p in paths.numpy()]
        truths = [_truth_at_original_size(masks[p], options, predictor.num_outputs) for p in images]
        probs, preds_full = predict_full_size(predictor, x.numpy(), [t.shape for t in truths])
        parts = zip(images, x.numpy(), labels_from_probs(y.numpy()), labels_from_probs(probs), truths, preds_full)
        for path, *arrays in parts:
            scoring.add(Path(path).stem, *arrays)
        stopping.check("eval wrote nothing (its report is written at the end); run the command again.")


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Evaluate a checkpoint on the test split: reference lines, per-class and per-image scores at
    model and original size, confusion matrix and the worst images; everything logged to MLflow."""
    common.prepare_dataset(cfg.dataset)
    model, _, run_id, exp_id = common.load_for_config(cfg)
    common.compile_model(model, cfg)
    predictor = Predictor(model, cfg.train.batch_size)
    h, w, c = predictor.input_size
    split = build_split(cfg.dataset, "test")
    read = common.read_options(cfg)
    ds = build_dataset(split, common.palette(cfg), (h, w), c, cfg.model.num_classes, cfg.train.batch_size,
                       options=read, with_paths=True)  # names travel with the pairs (on_bad_file=skip)
    names = common.class_names(cfg)
    scoring = _Scoring(names, common.display_palette(cfg))
    with stopping.graceful("eval wrote nothing (its report is written at the end); run the command again."):
        reference = model.evaluate(ds.map(lambda x, y, path: (x, y)), return_dict=True, verbose=0,
                                   callbacks=[SignalStop(evaluating=True)])
        _score_split(ds, predictor, dict(zip(split.images, split.masks)), read.mask, scoring)
    confusion, worst = scoring.model_size, scoring.worst
    if len(scoring.per_image) != len(split):
        log.warning("%d of %d test pairs scored; the others were skipped (dataset.on_bad_file=skip)",
                    len(scoring.per_image), len(split))

    rows = [*_reference_rows(reference, list(cfg.train.metrics)), *_score_rows(confusion, names),
            *_score_rows(scoring.original, names, ORIGINAL)]
    out = ctx.run_dir / "eval"
    files = [
        write_table(ctx.run_dir / "evaluation.csv", None, rows),  # key,value lines, as the reference writes
        write_table(out / "evaluation_per_image.csv", scoring.header(), scoring.per_image),
        write_confusion_csv(out / "confusion_matrix.csv", confusion, names),
        plots.plot_confusion(confusion, names, out / "confusion_matrix.png"),
    ]
    if len(worst):
        files.append(viz.write_rgb(out / "worst_images.png", worst.build_gallery()))
    results = dict(rows)

    test_metrics = {f"test_{k}": v for k, v in results.items() if np.isfinite(v)}
    with common.evaluation_run(cfg, "eval", ctx, exp_id, run_id):
        tracking.log_metrics(test_metrics)
        for path in files:
            tracking.log_artifact(path, "eval")
    if run_id:  # the scores also on the training run, to compare training runs by them
        tracking.log_metrics_to(run_id, test_metrics)
    log.info("evaluation of %d test images: %s, per-image scores, confusion matrix and the %d worst images in %s",
             len(split), files[0], len(worst), out)
    for k, v in rows:
        log.info("  %-42s %.4f", k, v)
    log.info("test mean foreground dice: %.4f at model resolution (the objective), %.4f at original size "
             "(reference dice_coef_multiclass, background included: %.4f)", results["mean_foreground_dice"],
             results[f"mean_foreground_dice{ORIGINAL}"], results.get("dice_coef_multiclass", float("nan")))
    results["objective"] = pick(results, cfg.train.objective)  # the test counterpart of train.objective
    return results
