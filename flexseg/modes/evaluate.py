"""`flexseg mode=eval`: checkpoint + test split -> evaluation report -> MLflow (the training's run).

Writes `evaluation.csv` (`loss` and the reference metrics first, as the reference's file, then
per-class dice/IoU/precision/recall and their foreground means) and under `eval/`: per-image
scores, the confusion matrix (CSV + heatmap) and a gallery of the worst images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from flexseg.reporting import plots, viz
from flexseg import tracking
from flexseg.config.schemas import Config
from flexseg.data.discovery import build_split
from flexseg.data.pipeline import build_dataset
from flexseg.context import RunContext
from flexseg.errors import FlexsegError
from flexseg.scoring import compute_confusion, compute_scores, image_scores, labels_from_probs, nanmean_foreground
from flexseg.modes import common
from flexseg.reporting.tables import WorstImages, write_confusion_csv, write_table

log = logging.getLogger(__name__)
WORST_K = 8  # images in the gallery of the worst predictions
# Metrics whose evaluate() value goes on the reference lines of evaluation.csv.
REFERENCE_METRICS = ("dice_coef_multiclass", "dice_coef", "iou_coef", "sensitivity", "specificity")





def _reference_rows(reference: dict[str, float], metric_names: list[str]) -> list[tuple[str, float]]:
    """`loss` then the reference function metrics, in `train.metrics` order (the reference file's head)."""
    rows = [("loss", float(reference["loss"]))]
    return rows + [(k, float(reference[k])) for k in metric_names if k in REFERENCE_METRICS and k in reference]


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Evaluate a checkpoint on the test split: reference lines, per-class and per-image scores,
    confusion matrix and the worst images; everything logged into the training's MLflow run."""
    common.prepare_dataset(cfg.dataset)
    model, _, run_id, exp_id = common.load_for_config(cfg)
    common.compile_model(model, cfg)
    h, w, c = common.model_input_size(model)
    split = build_split(cfg.dataset, "test")
    pal, shown = common.palette(cfg), common.display_palette(cfg)
    ds = build_dataset(split, pal, (h, w), c, cfg.model.num_classes, cfg.train.batch_size,
                       options=common.read_options(cfg))
    reference = model.evaluate(ds, return_dict=True, verbose=0)

    names = common.class_names(cfg)
    confusion = np.zeros((len(names), len(names)), np.int64)
    per_image: list[list[object]] = []
    worst = WorstImages(WORST_K)
    stems = [Path(p).stem for p in split.images]
    for x, y in ds:
        truth = labels_from_probs(y.numpy())
        pred = labels_from_probs(np.asarray(model.predict_on_batch(x)))
        for image, t, p in zip(x.numpy(), truth, pred):
            conf = compute_confusion(t, p, len(names))
            confusion += conf
            row = image_scores(conf, names)
            name = stems[len(per_image)] if len(per_image) < len(stems) else f"#{len(per_image)}"
            per_image.append([name, *row.values()])
            worst.offer(row["mean_foreground_dice"], name, viz.to_uint8_rgb(image), viz.colorize(t, shown),
                        viz.colorize(p, shown))
    if len(per_image) != len(stems):  # pairs skipped while reading (dataset.on_bad_file=skip)
        log.warning("%d of %d test pairs were read; per-image names may not match their images",
                    len(per_image), len(stems))
    scores = compute_scores(confusion)

    rows = _reference_rows(reference, list(cfg.train.metrics))
    for metric in ("dice", "iou", "precision", "recall"):
        rows += [(f"{metric}_{n}", float(v)) for n, v in zip(names, scores[metric])]
    rows += [(f"mean_foreground_{metric}", nanmean_foreground(scores[metric]))
             for metric in ("dice", "iou", "precision", "recall")]
    out = ctx.run_dir / "eval"
    files = [
        write_table(ctx.run_dir / "evaluation.csv", None, rows),  # key,value lines, as the reference writes
        write_table(out / "evaluation_per_image.csv", ["image", *image_scores(confusion, names)], per_image),
        write_confusion_csv(out / "confusion_matrix.csv", confusion, names),
        plots.plot_confusion(confusion, names, out / "confusion_matrix.png"),
    ]
    if len(worst):
        files.append(viz.write_rgb(out / "worst_images.png", worst.build_gallery()))
    results = dict(rows)

    tags = None if run_id else common.run_tags(cfg, "eval", ctx.run_dir)
    with tracking.start_run(exp_id, run_id=run_id, tags=tags):
        tracking.log_metrics({f"test_{k}": v for k, v in results.items() if np.isfinite(v)})
        for path in files:
            tracking.log_artifact(path, "eval")
    log.info("evaluation of %d test images: %s, per-image scores, confusion matrix and the %d worst images in %s",
             len(split), files[0], len(worst), out)
    for k, v in rows:
        log.info("  %-28s %.4f", k, v)
    log.info("test mean foreground dice: %.4f (reference dice_coef_multiclass, background included: %.4f)",
             results["mean_foreground_dice"], results.get("dice_coef_multiclass", float("nan")))
    results["objective"] = results["mean_foreground_dice"]
    return results
