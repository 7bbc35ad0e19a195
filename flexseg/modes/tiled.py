"""`flexseg mode=tiled`: large images -> blended sliding-window prediction -> full-size masks + overlays."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flexseg import tracking, viz
from flexseg.config import Config
from flexseg.data.discovery import list_image_files, list_images
from flexseg.data.masks import compute_labels_np
from flexseg.data.pipeline import labels_from_target
from flexseg.metrics import compute_confusion, compute_scores, nanmean_foreground
from flexseg.modes import common
from flexseg.modes.evaluate import load_for_config, write_key_values
from flexseg.modes.infer import MAX_LOGGED, write_outputs
from flexseg.tiling import count_tiles, predict_tiled

log = logging.getLogger(__name__)


def _default_dirs(cfg: Config) -> tuple[Path, Path | None]:
    root = Path(cfg.dataset.root)
    large = root / "large" / "images"
    images = Path(cfg.tiling.images_dir) if cfg.tiling.images_dir else (large if large.is_dir() else root / "test" / "images")
    if cfg.tiling.masks_dir:
        return images, Path(cfg.tiling.masks_dir)
    sibling = images.parent / "masks"
    return images, (sibling if cfg.tiling.images_dir is None and sibling.is_dir() else None)


def run(cfg: Config, ctx) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Tile every image of `tiling.images_dir`; score against `tiling.masks_dir` when masks exist."""
    common.prepare_dataset(cfg.dataset)
    model, _, run_id, exp_id = load_for_config(cfg)
    t = cfg.tiling
    model = common.with_input_size(model, t.tile_size, t.tile_size)
    channels = common.model_input_size(model)[2]
    images_dir, masks_dir = _default_dirs(cfg)
    files = list_image_files(images_dir, "tiling.images_dir")
    masks = list_images([masks_dir]) if masks_dir else {}
    out_dir = Path(t.output_dir) if t.output_dir else ctx.run_dir / "tiled"
    pal = common.palette(cfg)
    names = common.class_names(cfg)

    def predictor(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch), dtype=np.float32)

    rows: list[tuple[str, float]] = []
    confusion = np.zeros((len(names), len(names)), np.int64)
    for path in files:
        image = viz.read_rgb(path)
        x = image.astype(np.float32) / 255.0
        x = x[..., :1] if channels == 1 else x
        total = count_tiles(image.shape[0], image.shape[1], t.tile_size, t.overlap)
        with tqdm(total=total, desc=f"tiled {path.name}", unit="tile") as bar:
            probs = predict_tiled(x, predictor, t.tile_size, t.overlap, t.batch_size, t.blend, progress=bar.update)
        labels = labels_from_target(probs[None])[0]
        write_outputs(out_dir, path.stem, image, labels, pal)
        if path.stem in masks:
            truth = compute_labels_np(viz.read_rgb(masks[path.stem]), pal)
            conf = compute_confusion(truth, labels, len(names))
            confusion += conf
            rows.append((f"dice_{path.stem}", nanmean_foreground(compute_scores(conf)["dice"])))
    results: dict[str, float] = {"images": float(len(files))}
    if rows:
        results["mean_foreground_dice"] = nanmean_foreground(compute_scores(confusion)["dice"])
        write_key_values(out_dir / "tiled_metrics.csv", [*rows, ("mean_foreground_dice", results["mean_foreground_dice"])])
    tags = None if run_id else common.run_tags(cfg, "tiled", ctx.run_dir)
    with tracking.start_run(exp_id, run_id=run_id, tags=tags):
        if "mean_foreground_dice" in results:
            tracking.log_metrics({"tiled_mean_foreground_dice": results["mean_foreground_dice"]})
        for path in files[:MAX_LOGGED]:
            tracking.log_artifact(out_dir / "overlays" / f"{path.stem}.png", "tiled/overlays")
    log.info("tiled %d images (tile %d, overlap %d) from %s; outputs in %s", len(files), t.tile_size, t.overlap,
             images_dir, out_dir)
    if "mean_foreground_dice" in results:
        log.info("tiled mean foreground dice against %s: %.4f", masks_dir, results["mean_foreground_dice"])
    return results
