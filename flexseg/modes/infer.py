"""`flexseg mode=infer`: a folder of images of any size -> colour masks + overlays at original size.

Each image is predicted at the model size and its probabilities resized back to the image's size
before taking labels (`flexseg.inference.predict.predict_full_size`, as eval's original-size scores).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flexseg import stopping, tracking
from flexseg.config.schemas import Config
from flexseg.context import RunContext
from flexseg.data.discovery import build_split, check_inputs, list_image_files
from flexseg.data.pipeline import build_image_dataset
from flexseg.inference.image_io import read_rgb
from flexseg.inference.predict import Predictor, predict_full_size
from flexseg.modes import common
from flexseg.reporting import viz

log = logging.getLogger(__name__)


def write_outputs(out_dir: Path, name: str, image: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> None:
    """Colour mask to `masks/NAME.png`, overlay to `overlays/NAME.png`."""
    viz.write_rgb(out_dir / "masks" / f"{name}.png", viz.colorize(labels, palette))
    viz.write_rgb(out_dir / "overlays" / f"{name}.png", viz.overlay(image, labels, palette))


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Predict every image of `infer.images_dir` in batches; write colour masks and overlays."""
    common.prepare_dataset(cfg.dataset)
    model, _, run_id, exp_id = common.load_for_config(cfg)
    predictor = Predictor(model, cfg.infer.batch_size)
    h, w, c = predictor.input_size
    if cfg.infer.images_dir:
        images_dir = Path(cfg.infer.images_dir)
        files = check_inputs(list_image_files(images_dir, "infer.images_dir"), "infer.images_dir", cfg.dataset)
    else:  # the test split's images, whatever its layout
        files = [Path(p) for p in build_split(cfg.dataset, "test").images]
        images_dir = Path(cfg.dataset.root) / "test"
    out_dir = Path(cfg.infer.output_dir) if cfg.infer.output_dir else ctx.run_dir / "infer"
    pal = common.display_palette(cfg)
    ds = build_image_dataset([str(f) for f in files], (h, w), c, cfg.infer.batch_size,
                             options=common.read_options(cfg).image)
    done = 0
    with tqdm(total=len(files), desc="infer", unit="img") as bar, stopping.graceful():
        for batch in ds:
            paths = files[done : done + len(batch)]
            images = [read_rgb(path) for path in paths]
            _, labels = predict_full_size(predictor, batch.numpy(), [image.shape[:2] for image in images])
            for path, image, lab in zip(paths, images, labels):
                write_outputs(out_dir, path.stem, image, lab, pal)
                done += 1
                bar.update(1)
                stopping.check(f"infer wrote {done} of {len(files)} images to {out_dir} (each file complete); "
                               "run the command again for all of them.")
    with common.evaluation_run(cfg, "infer", ctx, exp_id, run_id):
        for path in files[:common.MAX_LOGGED]:
            tracking.log_artifact(out_dir / "overlays" / f"{path.stem}.png", "infer/overlays")
    log.info("inferred %d images from %s; masks and overlays in %s", done, images_dir, out_dir)
    return {"images": float(done)}
