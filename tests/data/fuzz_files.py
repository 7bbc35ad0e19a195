"""Seeded random and malformed image / mask files for the file fuzz (tests/data/test_file_fuzz.py).

`random_files(folder, rng, count)` writes `count` files of every awkward kind a dataset meets: random
bytes under an image name, valid files cut short, empty files, 1x1 images, a PNG header claiming 65535
pixels of width, 16-bit / 1-bit / RGBA / gray+alpha / float images, palette PNGs, masks with colours off
the palette, odd `.npz` arrays. `good` says whether a reader must accept the file (else it must report it).
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image

PALETTE = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)  # background black, foreground white


@dataclass(frozen=True)
class FuzzFile:
    path: Path
    kind: str
    good: bool | None  # True: must read; False: must be reported; None: either (valid but unusual)


def _encode(suffix: str, image: np.ndarray) -> bytes:
    if suffix in (".tif", ".tiff"):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, image)
        return buffer.getvalue()
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def png_header(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose header claims `width` x `height` but whose data holds (almost) nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _pil_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _mask(rng: random.Random, size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size, 3), np.uint8)
    mask[rng.randrange(max(1, size // 2)):, rng.randrange(max(1, size // 2)):] = 255
    return mask


def one_file(rng: random.Random, index: int, for_mask: bool = False) -> tuple[str, bytes, str, bool | None]:
    """(file name, bytes, kind, good) of one random case."""
    suffix = rng.choice([".png", ".jpg", ".tif", ".bmp"] + ([".npz"] if for_mask else []))
    size = rng.choice([1, 2, 16, 33])
    pixels = np.asarray(np.random.default_rng(index).integers(0, 256, (size, size, 3)), np.uint8)
    base = _mask(rng, size) if for_mask else pixels
    valid = _npz({"mask": (base[..., 0] > 0).astype(np.uint8)}) if suffix == ".npz" else _encode(suffix, base)
    kind = rng.choice(["random", "truncated", "empty", "corrupted", "valid", "odd", "bomb"])
    name = f"f{index:03d}_{kind}{suffix}"
    if kind == "random":
        return name, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))), kind, False
    if kind == "truncated":  # at most 90 % of the file is left: pixel data is missing
        return name, valid[: rng.randrange(1, max(2, len(valid) * 9 // 10))], kind, False
    if kind == "empty":
        return name, b"", kind, False
    if kind == "corrupted":  # a run of bytes overwritten somewhere after the first 8
        data = bytearray(valid)
        start = rng.randrange(8, max(9, len(data) - 1))
        data[start : start + rng.randrange(1, 64)] = bytes(rng.randrange(256) for _ in range(64))[: len(data) - start]
        return name, bytes(data), kind, None
    if kind == "bomb":
        return f"f{index:03d}_bomb.png", png_header(65535, rng.choice([1, 65535])), kind, False
    if kind == "valid":
        return name, valid, kind, True
    return odd_file(rng, index, for_mask)


def odd_file(rng: random.Random, index: int, for_mask: bool) -> tuple[str, bytes, str, bool | None]:
    """A valid file of an unusual kind: the readers must take it (masks: it may be off the palette)."""
    gen = np.random.default_rng(index)
    which = rng.choice(["16bit", "1bit", "rgba", "gray_alpha", "float_tiff", "palette", "off_palette",
                        "npz_float", "npz_3d", "npz_negative", "npz_1d", "multipage_tiff", "tiny"])
    name = f"f{index:03d}_{which}"
    if which == "16bit":
        return name + ".png", _encode(".png", gen.integers(0, 65536, (16, 16, 3), dtype=np.uint16)), which, None
    if which == "1bit":
        return name + ".png", _pil_bytes(Image.fromarray(gen.integers(0, 2, (16, 16), dtype=np.uint8) * 255).convert("1")), which, None
    if which == "rgba":
        return name + ".png", _encode(".png", gen.integers(0, 256, (16, 16, 4), dtype=np.uint8)), which, None
    if which == "gray_alpha":
        return name + ".png", _pil_bytes(Image.fromarray(gen.integers(0, 256, (16, 16, 2), dtype=np.uint8), "LA")), which, None
    if which == "float_tiff":
        return name + ".tif", _encode(".tif", gen.random((16, 16, 3), dtype=np.float32) * 1000), which, None
    if which == "palette":
        image = Image.fromarray(gen.integers(0, 2, (16, 16), dtype=np.uint8), "P")
        image.putpalette([0, 0, 0, 255, 255, 255])
        return name + ".png", _pil_bytes(image), which, None
    if which == "off_palette":
        return name + ".png", _encode(".png", np.full((16, 16, 3), (255, 0, 255), np.uint8)), which, None
    if which == "multipage_tiff":
        return name + ".tif", _encode(".tif", gen.integers(0, 256, (3, 16, 16), dtype=np.uint8)), which, None
    if which == "tiny":
        return name + ".png", _encode(".png", np.zeros((1, 1, 3), np.uint8)), which, None
    arrays = {"npz_float": gen.random((16, 16)) * 3, "npz_3d": gen.integers(0, 2, (16, 16, 5)),
              "npz_negative": gen.integers(-3, 2, (16, 16)), "npz_1d": gen.integers(0, 2, (16,))}
    return name + ".npz", _npz({"mask": arrays[which]}), which, None


def random_files(folder: Path, rng: random.Random, count: int, for_mask: bool = False) -> list[FuzzFile]:
    """Write `count` random cases into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        name, data, kind, good = one_file(rng, index, for_mask)
        path = folder / name
        path.write_bytes(data)
        files.append(FuzzFile(path, kind, good))
    return files
