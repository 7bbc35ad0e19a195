"""`flexseg mode=infer`: a folder of images of any size -> colour masks + overlays at original size."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from flexseg import tracking
from flexseg.reporting import viz
from flexseg.config.schemas import Config
from flexseg.context import RunContext
from flexseg.data.discovery import build_split, list_image_files
from flexseg.data.pipeline import build_image_dataset
from flexseg.scoring import labels_from_probs
from flexseg.modes import common

log = logging.getLogger(__name__)


def resize_probabilities(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, K) probabilities -> (height, width, K), bilinear per channel (argmax after, not before)."""
    out = cv2.resize(probs, (width, height), interpolation=cv2.INTER_LINEAR)
    return out[..., None] if out.ndim == 2 else out


def write_outputs(out_dir: Path, name: str, image: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> None:
    """Colour mask to `masks/NAME.png`, overlay to `overlays/NAME.png`."""
    viz.write_rgb(out_dir / "masks" / f"{name}.png", viz.colorize(labels, palette))
    viz.write_rgb(out_dir / "overlays" / f"{name}.png", viz.overlay(image, labels, palette))


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Predict every image of `infer.images_dir` in batches; write colour masks and overlays."""
    common.prepare_dataset(cfg.dataset)
    model, _, run_id, exp_id = common.load_for_config(cfg)
    h, w, c = common.model_input_size(model)
    if cfg.infer.images_dir:
        images_dir = Path(cfg.infer.images_dir)
        files = list_image_files(images_dir, "infer.images_dir")
    else:  # the test split's images, whatever its layout
        files = [Path(p) for p in build_split(cfg.dataset, "test").images]
        images_dir = Path(cfg.dataset.root) / "test"
    out_dir = Path(cfg.infer.output_dir) if cfg.infer.output_dir else ctx.run_dir / "infer"
    pal = common.display_palette(cfg)
    ds = build_image_dataset([str(f) for f in files], (h, w), c, cfg.infer.batch_size,
                             options=common.read_options(cfg).image)
    done = 0
    with tqdm(total=len(files), desc="infer", unit="img") as bar:
        for batch in ds:
            probs = np.asarray(model.predict_on_batch(batch))
            for p in probs:
                path = files[done]
                image = viz.read_rgb(path)
                full = resize_probabilities(p, image.shape[0], image.shape[1])
                write_outputs(out_dir, path.stem, image, labels_from_probs(full[None])[0], pal)
                done += 1
            bar.update(len(probs))
    tags = None if run_id else common.run_tags(cfg, "infer", ctx.run_dir)
    with tracking.start_run(exp_id, run_id=run_id, tags=tags):
        for path in files[:common.MAX_LOGGED]:
            tracking.log_artifact(out_dir / "overlays" / f"{path.stem}.png", "infer/overlays")
    log.info("inferred %d images from %s; masks and overlays in %s", done, images_dir, out_dir)
    return {"images": float(done)}
