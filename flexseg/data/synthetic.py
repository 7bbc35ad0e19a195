"""The embedded `synthetic` dataset: textured disks, rectangles and triangles on a textured background.

`build_synthetic_dataset` renders it deterministically from `SyntheticConfig.seed` into the
reference on-disk layout (`<root>/<split>/{images,masks}/NAME.png`, plus `<root>/large/` for
tiled inference), so the same file pipeline reads it as any real dataset. A marker file makes
later calls a cache hit; a fresh build is written beside `root` and swapped in when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from filelock import FileLock

from flexseg.config.schemas import SyntheticConfig
from flexseg.errors import FlexsegError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER = ".flexseg_synthetic.json"
SPLITS = ("train", "valid", "test", "large")
# Mean RGB of background, disks, rectangles, triangles before per-image and per-object jitter.
BASE_RGB = np.array([[150, 140, 122], [205, 95, 80], [95, 175, 90], [85, 115, 205]], np.float32)
OBJECTS_PER_IMAGE = 9.0  # mean object count on one image_size x image_size canvas


def _marker(spec: SyntheticConfig, colors: Sequence[tuple[int, int, int]]) -> dict:
    """The cache key: format version, every spec field that shapes the images, and the class colours."""
    return {
        "version": FORMAT_VERSION,
        "spec": {f.name: int(getattr(spec, f.name)) for f in fields(SyntheticConfig) if f.name != "cache_root"},
        "colors": [[int(v) for v in c] for c in colors],
    }


def _place_objects(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Sample object centres, radii, classes and shape parameters; neighbours may touch or overlap.

    Returns:
        (N, 6) float array of rows (cx, cy, radius, class 1..3, angle in radians, shape in [0, 1)).
    """
    count = rng.poisson(OBJECTS_PER_IMAGE * (size / scale) ** 2)
    r_min, r_max = max(3.0, 0.05 * scale), max(5.0, 0.13 * scale)
    rows = np.zeros((count, 6))
    n = 0
    for _ in range(count):
        for _ in range(20):  # rejection sampling: centres at least 0.7 * (r1 + r2) apart
            cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(r_min, r_max)
            prev = rows[:n]
            if np.all(np.hypot(prev[:, 0] - cx, prev[:, 1] - cy) >= 0.7 * (prev[:, 2] + r)):
                rows[n] = cx, cy, r, rng.integers(1, 4), rng.uniform(0, 2 * np.pi), rng.random()
                n += 1
                break
    return rows[:n]


def _draw_objects(objects: np.ndarray, size: int) -> np.ndarray:
    """Rasterise objects (no anti-aliasing) into an (H, W) int32 map of object ids, 0 = background."""
    ids = np.zeros((size, size), np.int32)
    for i, (cx, cy, r, cls, angle, shape) in enumerate(objects, start=1):
        if cls == 1:
            cv2.circle(ids, (int(round(cx)), int(round(cy))), int(round(r)), i, -1, cv2.LINE_8)
            continue
        if cls == 2:  # rotated rectangle, aspect 1..2, same area as a square of side 1.6 r
            aspect = 1.0 + shape
            w, h = 1.6 * r * np.sqrt(aspect), 1.6 * r / np.sqrt(aspect)
            pts = cv2.boxPoints(((cx, cy), (w, h), np.degrees(angle)))
        else:  # roughly equilateral triangle inscribed in radius 1.15 r
            t = angle + np.array([0.0, 2.1, 4.2]) + 0.3 * (shape - 0.5) * np.array([1.0, -1.0, 0.0])
            pts = np.stack([cx + 1.15 * r * np.cos(t), cy + 1.15 * r * np.sin(t)], axis=1)
        cv2.fillPoly(ids, [np.round(pts).astype(np.int32)], i, cv2.LINE_8)
    return ids


def _smooth_noise(rng: np.random.Generator, size: int, cell: int, channels: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid upsampled bicubically, (H, W, C)."""
    n = max(2, size // cell + 2)
    grid = rng.uniform(-1, 1, (n, n, channels)).astype(np.float32)
    up = cv2.resize(grid, (n * cell, n * cell), interpolation=cv2.INTER_CUBIC)
    return up.reshape(n * cell, n * cell, channels)[:size, :size]


def _render_image(rng: np.random.Generator, ids: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Paint an RGB image for an object-id map: class tint and texture, noise, mild blur.

    Args:
        rng: generator for all randomness of this image.
        ids: (H, W) int32 object ids from `_draw_objects`, 0 = background.
        objects: (N, 6) rows from `_place_objects`.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    size = ids.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cls = np.concatenate([[0], objects[:, 3]]).astype(np.int64)[ids]
    gain = np.concatenate([[1.0], rng.uniform(0.8, 1.15, len(objects))]).astype(np.float32)[ids]
    angle = np.concatenate([[0.0], objects[:, 4]]).astype(np.float32)[ids]
    tint = BASE_RGB[cls] + rng.normal(0, 10, (1, 1, 3)).astype(np.float32)

    background = 38 * _smooth_noise(rng, size, 24, 3) + 14 * _smooth_noise(rng, size, 5, 1)
    dots = np.where(rng.random((size, size)) < 0.12, -60.0, 0.0)
    speckle = dots + 10 * _smooth_noise(rng, size, 3, 1)[..., 0]
    stripes = 28 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / 5.0))
    checks = 22 * np.sign(np.sin(xx * (np.pi / 3.0)) * np.sin(yy * (np.pi / 3.0)))
    texture = np.select([cls == 1, cls == 2, cls == 3], [speckle, stripes, checks], 0.0).astype(np.float32)

    img = np.where((cls == 0)[..., None], tint + background, tint * gain[..., None] + texture[..., None])
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.8)
    img += rng.normal(0, rng.uniform(4, 10), img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _write_pair(folder: Path, name: str, seed: Sequence[int], size: int, scale: int, palette: np.ndarray) -> None:
    """Generate one image/mask pair from its own seed and write both PNGs (RGB on disk)."""
    rng = np.random.default_rng(list(seed))
    objects = _place_objects(rng, size, scale)
    ids = _draw_objects(objects, size)
    image = _render_image(rng, ids, objects)
    mask = palette[np.concatenate([[0], objects[:, 3]]).astype(np.int64)[ids]]
    for sub, rgb in (("images", image), ("masks", mask)):
        if not cv2.imwrite(str(folder / sub / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cv2.imwrite failed for {folder / sub / name}.png")


def _generate(folder: Path, spec: SyntheticConfig, palette: np.ndarray) -> None:
    """Write all four splits into `folder`; image k of split s is seeded by (seed, s, k)."""
    counts = (spec.num_train, spec.num_valid, spec.num_test, spec.num_large)
    for s, (split, count) in enumerate(zip(SPLITS, counts)):
        for sub in ("images", "masks"):
            (folder / split / sub).mkdir(parents=True, exist_ok=True)
        large = split == "large"
        for k in range(count):
            name = f"large_{k:02d}" if large else f"synth_{k:04d}"
            size = spec.large_size if large else spec.image_size
            _write_pair(folder / split, name, (spec.seed, s, k), size, spec.image_size, palette)


def build_synthetic_dataset(root: Path, spec: SyntheticConfig, colors: Sequence[tuple[int, int, int]]) -> Path:
    """Generate the synthetic dataset into `root`, or reuse it when its marker matches.

    Args:
        root: dataset folder; gets `{train,valid,test}/{images,masks}` of image_size x image_size
            pairs and `large/{images,masks}` of large_size x large_size pairs (same object scale).
        spec: seed, sizes and counts.
        colors: RGB mask colour per class: background, disk, rectangle, triangle.

    Returns:
        `root`.

    Raises:
        FlexsegError: when `colors` does not list 4 classes, or `root` holds other data.
    """
    root = Path(root)
    if len(colors) != 4:
        raise FlexsegError(
            f"The synthetic dataset has 4 classes (background, disk, rectangle, triangle); "
            f"dataset.classes lists {len(colors)}."
        )
    marker = _marker(spec, colors)
    if (root / MARKER).is_file() and json.loads((root / MARKER).read_text()) == marker:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # Parallel sweep jobs: one generates, the others wait and then reuse its folder. The lock file lives
    # in the temp folder (named by the dataset path), so nothing is left beside the data.
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    with FileLock(str(Path(tempfile.gettempdir()) / f"flexseg-synthetic-{key}.lock")):
        return _generate_once(root, spec, marker)


def _generate_once(root: Path, spec: SyntheticConfig, marker: dict) -> Path:  # type: ignore[type-arg]
    """`build_synthetic_dataset` under its lock: reuse what another process made meanwhile, else generate."""
    marker_path = root / MARKER
    if marker_path.is_file() and json.loads(marker_path.read_text()) == marker:
        return root
    if root.exists() and any(root.iterdir()) and not marker_path.is_file():
        raise FlexsegError(
            f"dataset.root={root} holds files but no {MARKER}; it is not a synthetic dataset "
            "folder, so flexseg will not overwrite it. Point dataset.root at an empty or new folder."
        )
    log.info("Generating the synthetic dataset (seed %d) into %s", spec.seed, root)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _generate(tmp, spec, np.asarray(marker["colors"], np.uint8))
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if root.exists():
        os.replace(root, old)  # the old dataset goes only once the new one is complete
    os.replace(tmp, root)
    shutil.rmtree(old, ignore_errors=True)
    return root
