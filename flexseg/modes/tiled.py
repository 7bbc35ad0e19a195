"""`flexseg mode=tiled`: large images -> blended sliding-window prediction -> full-size masks + overlays.

Each image streams through ``flexseg.inference.segment.segment_file`` (read lazily, predicted in
bands, written band by band), so whole-slide TIFFs run in memory bounded by their width. With masks
(decoded and checked as training reads them), per-image dice/IoU go to ``tiled_metrics.csv``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flexseg import stopping, tracking
from flexseg.config.schemas import Config
from flexseg.context import RunContext
from flexseg.data.discovery import check_inputs, list_image_files
from flexseg.inference.predict import Predictor
from flexseg.inference.segment import TiledOptions, segment_file
from flexseg.inference.sliding_window import resolve_overlap
from flexseg.modes import common
from flexseg.reporting.tables import write_table
from flexseg.scoring import image_scores
from flexseg.sweep.objective import pick

log = logging.getLogger(__name__)


def _default_dirs(cfg: Config) -> tuple[Path, Path | None]:
    root = Path(cfg.dataset.root)
    large = root / "large" / "images"
    default = large if large.is_dir() else root / "test" / "images"
    images = Path(cfg.tiling.images_dir) if cfg.tiling.images_dir else default
    if cfg.tiling.masks_dir:
        return images, Path(cfg.tiling.masks_dir)
    sibling = images.parent / "masks"
    return images, (sibling if cfg.tiling.images_dir is None and sibling.is_dir() else None)



def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Tile every image of `tiling.images_dir`; score against `tiling.masks_dir` when masks exist."""
    common.prepare_dataset(cfg.dataset)
    model, _, run_id, exp_id = common.load_for_config(cfg)
    t = cfg.tiling
    predictor = Predictor(model, t.batch_size).at_size(t.tile_size, t.tile_size)
    images_dir, masks_dir = _default_dirs(cfg)
    masks = {p.stem: p for p in list_image_files(masks_dir, "tiling.masks_dir", allow_empty=True)} if masks_dir else {}
    files = check_inputs(list_image_files(images_dir, "tiling.images_dir"), "tiling.images_dir", cfg.dataset, masks,
                         lazy_tiff=True)  # TIFFs are read by rows: dataset.max_pixels does not limit them
    out_dir = Path(t.output_dir) if t.output_dir else ctx.run_dir / "tiled"
    pal, names, read = common.display_palette(cfg), common.class_names(cfg), common.read_options(cfg)
    options = TiledOptions(t.tile_size, t.overlap, t.batch_size, t.blend, t.tta, t.output_format, t.save_probabilities)

    rows: list[dict[str, float | str]] = []
    confusion = np.zeros((len(names), len(names)), np.int64)
    logged: list[Path] = []
    with stopping.graceful():  # a signal: the image in progress is finished and written, then the mode stops
        for done, path in enumerate(files, 1):
            started = time.perf_counter()
            with tqdm(desc=f"tiled {path.name}", unit="tile") as bar:
                result = segment_file(path, predictor, options, read.image, pal, out_dir, masks.get(path.stem),
                                      progress=bar.update, on_start=bar.reset, mask_options=read.mask,
                                      max_unmatched=read.max_unmatched)
            seconds = time.perf_counter() - started
            height, width = result.shape
            log.info("%s: %dx%d, %d tiles%s in %.1f s (%.2f MP/s) -> %s", path.name, width, height, result.tiles,
                     " x4 flips" if t.tta else "", seconds, height * width / seconds / 1e6, result.outputs["masks"])
            if result.confusion is not None:
                confusion += result.confusion
                rows.append({"image": path.stem, **image_scores(result.confusion, names)})
            if result.outputs["overlays"].suffix == ".png" and len(logged) < common.MAX_LOGGED:
                logged.append(result.outputs["overlays"])
            stopping.check(f"tiled wrote the outputs of {done} of {len(files)} images to {out_dir} (each file "
                           "complete); run the command again for all of them.")
    results: dict[str, float] = {"images": float(len(files))}
    if rows:
        total = {"image": "all", **image_scores(confusion, names)}
        results["mean_foreground_dice"] = float(total["mean_foreground_dice"])
        results["mean_foreground_iou"] = float(total["mean_foreground_iou"])
        results["objective"] = pick(results, cfg.train.objective)
        write_table(out_dir / "tiled_metrics.csv", list(total), [list(r.values()) for r in [*rows, total]])
    scores = {f"tiled_{k}": results[k] for k in ("mean_foreground_dice", "mean_foreground_iou") if k in results}
    with common.evaluation_run(cfg, "tiled", ctx, exp_id, run_id):
        tracking.log_metrics(scores)
        for overlay in logged:  # TIFF outputs (large images) stay in the folder only
            tracking.log_artifact(overlay, "tiled/overlays")
    if run_id and scores:  # the scores also on the training run, to compare training runs by them
        tracking.log_metrics_to(run_id, scores)
    log.info("tiled %d images (tile %d, overlap %d px, blend %s%s) from %s; outputs in %s", len(files), t.tile_size,
             resolve_overlap(t.overlap, t.tile_size), t.blend, ", flip TTA" if t.tta else "", images_dir, out_dir)
    if rows:
        log.info("tiled mean foreground dice / IoU against %s: %.4f / %.4f", masks_dir,
                 results["mean_foreground_dice"], results["mean_foreground_iou"])
    return results
