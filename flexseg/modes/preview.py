"""`flexseg mode=preview`: a grid of augmented images and their mask overlays, as training sees them."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from flexseg import tracking
from flexseg.reporting import viz
from flexseg.config.schemas import Config
from flexseg.data.augment import build_augment
from flexseg.data.discovery import build_split
from flexseg.data.pipeline import build_dataset
from flexseg.scoring import labels_from_probs
from flexseg.context import RunContext
from flexseg.errors import FlexsegError
from flexseg.modes import common

log = logging.getLogger(__name__)


def build_preview_grid(
    images: np.ndarray, labels: np.ndarray, palette: np.ndarray, columns: int, panel_size: int
) -> np.ndarray:
    """Tile (image, overlay) pairs into a grid, `columns` pairs per row, each panel at most `panel_size`.

    Args:
        images: (N, H, W, C) float in [0, 1].
        labels: (N, H, W) class indices.
        palette: (K, 3) uint8 class colours.

    Returns:
        (rows, cols, 3) uint8 RGB grid.
    """
    h, w = images.shape[1:3]
    scale = min(1.0, panel_size / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    panels = []
    for image, lab in zip(images, labels):
        rgb = viz.to_uint8_rgb(image)
        for panel in (rgb, viz.overlay(rgb, lab, palette)):
            panels.append(cv2.resize(panel, size, interpolation=cv2.INTER_AREA) if scale < 1 else panel)
    per_row = 2 * min(columns, len(images))
    blank = np.full_like(panels[0], 255)
    panels += [blank] * (-len(panels) % per_row)
    rows = [panels[i : i + per_row] for i in range(0, len(panels), per_row)]
    return viz.build_grid(rows, ["augmented", "+ mask"] * (per_row // 2))


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Write `preview.png` (`preview.count` augmented pairs of `preview.split`) and log it to MLflow."""
    p, m = cfg.preview, cfg.model
    if p.count < 1 or p.columns < 1 or p.panel_size < 16:
        raise FlexsegError(
            f"preview.count={p.count}, preview.columns={p.columns}, preview.panel_size={p.panel_size}: "
            "count and columns must be at least 1, panel_size at least 16."
        )
    common.seed_everything(cfg.seed)
    common.prepare_dataset(cfg.dataset)
    augment = build_augment(cfg.augment)
    if augment is None:
        log.warning("augment=%s turns every op off: the preview shows the images unchanged", cfg.augment.name)
    split = build_split(cfg.dataset, p.split.value)
    pal = common.palette(cfg)
    # As training reads its first epoch (shuffled, seeded; repeated for count > pairs), with one-hot
    # targets to recover the labels.
    ds = build_dataset(split, pal, (m.image_height, m.image_width), m.image_channels, len(pal), p.count,
                       shuffle=True, seed=cfg.seed, repeat=True, shuffle_buffer=cfg.train.shuffle_buffer,
                       augment=augment, options=common.read_options(cfg))
    images, targets = (t.numpy() for t in next(iter(ds)))
    grid = build_preview_grid(images, labels_from_probs(targets), common.display_palette(cfg), p.columns,
                              p.panel_size)
    path = viz.write_rgb(ctx.run_dir / "preview.png", grid)

    exp_id = common.open_tracking(cfg)
    name = tracking.run_name(cfg.tracking.experiment, "preview", [f"augment={cfg.augment.name}", *ctx.overrides])
    with tracking.start_run(exp_id, run_name=name,
                            tags=common.run_tags(cfg, "preview", ctx.run_dir)) as run_id:
        tracking.log_params(tracking.flatten_params(cfg))
        tracking.log_artifact(path)
    log.info("preview of %d augmented %s pairs (augment=%s): %s (MLflow run %s)", len(images), p.split,
             cfg.augment.name, path, run_id)
    return {"images": float(len(images))}
