"""Builders of broken datasets (one file per bad-input case the data layer must report) and of awkward masks."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

RED_MASK = np.zeros((16, 16, 3), np.uint8)
RED_MASK[4:12, 4:12] = (0, 0, 255)  # BGR red
EDGE_PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)  # black, red, green


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def png_bomb_header(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid-looking PNG whose header claims an enormous image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def good_pair(root: Path, split: str, stem: str, size: int = 16) -> None:
    img = np.full((size, size, 3), 120, np.uint8)
    mask = cv2.resize(RED_MASK, (size, size), interpolation=cv2.INTER_NEAREST)
    write_png(root / split / "images" / f"{stem}.png", img)
    write_png(root / split / "masks" / f"{stem}.png", mask)


def antialiased_mask() -> tuple[np.ndarray, np.ndarray]:
    """100x100: black | red | green bands (`EDGE_PALETTE`); 3 columns (3 % of the pixels) at the borders blend two colours.

    Returns:
        ((100, 100, 3) uint8 RGB mask, (100, 100) the class each pixel's nearer colour gives).
    """
    pal = EDGE_PALETTE.astype(float)
    classes = np.array([0] * 32 + [1] * 35 + [2] * 33)[None].repeat(100, 0)
    rgb = pal[classes]
    truth = classes.copy()
    for cols, (a, b), ts in (((31, 32), (0, 1), (0.25, 0.75)), ((67,), (1, 2), (0.45,))):
        for col, t in zip(cols, ts):  # (64, 0, 0), (191, 0, 0), (140, 115, 0) + noise
            rgb[:, col] = (1 - t) * pal[a] + t * pal[b] + [3, -2, 1]  # plus a little JPEG-like noise
            truth[:, col] = a if t < 0.5 else b
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), truth


def build_bad_dataset(root: Path) -> dict[str, str]:
    """A train split holding every per-file problem at once; returns {case: file name expected in messages}."""
    for i in range(3):
        good_pair(root, "train", f"good_{i}")
    images, masks = root / "train" / "images", root / "train" / "masks"
    write_png(images / "lonely_image.png", np.zeros((16, 16, 3), np.uint8))
    write_png(masks / "orphan_mask.png", RED_MASK)
    (images / "zero_bytes.png").write_bytes(b"")
    write_png(masks / "zero_bytes.png", RED_MASK)
    (images / "random_bytes.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    write_png(masks / "random_bytes.png", RED_MASK)
    full = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))[1].tobytes()
    (images / "truncated_png.png").write_bytes(full[: len(full) // 2])
    write_png(masks / "truncated_png.png", RED_MASK)
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", noise)[1].tobytes()
    (images / "truncated_jpg.jpg").write_bytes(jpg[: len(jpg) // 2])
    write_png(masks / "truncated_jpg.png", cv2.resize(RED_MASK, (64, 64), interpolation=cv2.INTER_NEAREST))
    write_png(images / "size_mismatch.png", np.zeros((16, 16, 3), np.uint8))
    write_png(masks / "size_mismatch.png", np.zeros((20, 16, 3), np.uint8))
    write_png(images / "twice.png", np.zeros((16, 16, 3), np.uint8))
    write_png(images / "twice.jpg", np.zeros((16, 16, 3), np.uint8))
    write_png(masks / "twice.png", RED_MASK)
    png_bomb_header(images / "bomb.png")
    png_bomb_header(masks / "bomb.png")
    write_png(images / "purple.png", np.zeros((16, 16, 3), np.uint8))
    write_png(masks / "purple.png", np.full((16, 16, 3), (200, 0, 200), np.uint8))  # no class is purple
    (images / ".DS_Store").write_bytes(b"\0\0junk")
    (masks / "Thumbs.db").write_bytes(b"junk")
    (images / "notes.txt").write_text("not an image")
    return {
        "unpaired-image": "lonely_image.png", "unpaired-mask": "orphan_mask.png", "empty-file": "zero_bytes.png",
        "undecodable": "random_bytes.png", "truncated": "truncated_png.png", "truncated-jpeg": "truncated_jpg.jpg",
        "size-mismatch": "size_mismatch.png", "duplicate-stem": "twice", "too-large": "bomb.png",
    }
