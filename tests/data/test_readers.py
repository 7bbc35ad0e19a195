"""Every image and mask kind reads into the same arrays; bad values get clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from flexseg.config.schemas import ClassConfig
from flexseg.data.masks import build_palette
from flexseg.data.readers import ImageOptions, MaskOptions, read_image, resolve_color_converter
from flexseg.data.mask_files import read_labels
from flexseg.errors import FlexsegError
from flexseg.inference.image_io import ModelInput, open_image, read_rgb

PALETTE = build_palette([ClassConfig("bg", [0, 0, 0]), ClassConfig("a", [255, 0, 0]), ClassConfig("b", [0, 0, 255])])


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp", ".jpg"])
def test_rgb_formats_read_as_rgb_in_unit_range(tmp_path: Path, ext: str) -> None:
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 200  # red in BGR
    cv2.imwrite(str(tmp_path / f"x{ext}"), bgr)
    img = read_image(tmp_path / f"x{ext}", ImageOptions())
    assert img.shape == (8, 8, 3) and img.dtype == np.float32
    assert abs(img[..., 0].mean() - 200 / 255) < 0.03 and img[..., 2].mean() < 0.03  # RGB order


def test_16bit_gray_and_rgba_normalise_to_model_channels(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "g16.png"), np.full((6, 5), 65535, np.uint16))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.full((6, 5, 4), 255, np.uint8))
    assert read_image(tmp_path / "g16.png", ImageOptions(channels=3)).shape == (6, 5, 3)
    np.testing.assert_allclose(read_image(tmp_path / "g16.png", ImageOptions(channels=1)), 1.0)
    assert read_image(tmp_path / "rgba.png", ImageOptions(channels=1)).shape == (6, 5, 1)


def _ramp(shape: tuple[int, ...], top: float, dtype: type) -> np.ndarray:
    """Values 0..top, the largest only in the last row (a band read of the top rows never sees it)."""
    values = np.random.default_rng(3).uniform(0, top * 0.9, shape)
    values[-1, -1] = top
    return values.astype(dtype)


@pytest.mark.parametrize(("data", "channels"), [
    (_ramp((40, 50, 3), 1000.0, np.float32), 3),  # float 0..1000: divided by the image's largest value
    (_ramp((40, 50), 1000.0, np.float64), 1),
    (_ramp((40, 50, 3), 0.8, np.float32), 3),  # float already in [0, 1]: kept as it is
    (_ramp((40, 50, 3), 65535.0, np.uint16), 3),  # 16 bits: full precision in both
])
def test_training_and_tiled_reading_give_the_same_model_input(tmp_path: Path, data: np.ndarray, channels: int) -> None:
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, data, tile=(16, 16), photometric="rgb" if data.ndim == 3 else "minisblack")
    opts = ImageOptions(channels)
    train = read_image(path, opts)
    if data.dtype.kind == "f":
        expected = data / max(float(data.max()), 1.0)
        np.testing.assert_allclose(train, expected.reshape(train.shape), atol=1e-6)
    reader = open_image(path)
    try:
        tiled = ModelInput(reader, opts)
        np.testing.assert_allclose(tiled[0:16], train[:16], atol=1e-6)  # a band before the largest value
        np.testing.assert_allclose(tiled[0:40], train, atol=1e-6)
    finally:
        reader.close()
    shown = read_rgb(path)  # infer overlays and the epoch callbacks' tiled image: the same scale in 8 bits
    np.testing.assert_allclose(shown[..., :channels] / 255.0, train, atol=1 / 255 + 1e-6)


def test_color_order_converter_gamma_and_resize(tmp_path: Path) -> None:
    bgr = np.zeros((40, 60, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    cv2.imwrite(str(tmp_path / "b.png"), bgr)
    assert read_image(tmp_path / "b.png", ImageOptions(color_order="BGR"))[0, 0, 0] == 1.0
    hsv = read_image(tmp_path / "b.png", ImageOptions(color_converter=resolve_color_converter("COLOR_BGR2HSV_FULL")))
    np.testing.assert_allclose(hsv[0, 0], np.array([170, 255, 255]) / 255, atol=0.01)  # blue hue on 0..255
    cv2.imwrite(str(tmp_path / "g.png"), np.full((4, 4), 64, np.uint8))
    np.testing.assert_allclose(read_image(tmp_path / "g.png", ImageOptions(gamma=2.0))[0, 0, 0], (64 / 255) ** 0.5, rtol=1e-5)
    assert read_image(tmp_path / "b.png", ImageOptions(), size=(16, 32)).shape == (16, 32, 3)


def test_color_converter_is_looked_up_never_evaluated() -> None:
    assert resolve_color_converter("COLOR_BGR2HSV_FULL") == cv2.COLOR_BGR2HSV_FULL
    for bad in ("COLOR_NOPE", "__import__('os')", "imread"):
        with pytest.raises(FlexsegError, match=r"dataset\.color_converter="):
            resolve_color_converter(bad)


def test_gray_mask_threshold_and_blur(tmp_path: Path) -> None:
    gray = np.array([[0, 79, 80, 255]], np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), gray)
    opts = MaskOptions(PALETTE[:2], mask_format="gray", threshold=80)
    labels, unmatched = read_labels(tmp_path / "m.png", opts)
    np.testing.assert_array_equal(labels, [[0, 0, 1, 1]])
    assert unmatched == 0
    blurred, _ = read_labels(tmp_path / "m.png", MaskOptions(PALETTE[:2], mask_format="gray", threshold=80, blur=3))
    assert blurred.shape == (1, 4)


def test_index_png_npz_and_unmatched_counts(tmp_path: Path) -> None:
    idx = np.array([[0, 1], [2, 7]], np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [9, 9, 9] * 253)
    im.save(tmp_path / "p.png")
    labels, unmatched = read_labels(tmp_path / "p.png", MaskOptions(PALETTE))  # auto: palette PNG = indices
    np.testing.assert_array_equal(labels, [[0, 1], [2, 0]])
    assert unmatched == 1  # index 7 is no class
    np.savez(tmp_path / "m.npz", mask=idx[:, :1])
    assert read_labels(tmp_path / "m.npz", MaskOptions(PALETTE))[0].tolist() == [[0], [2]]
    np.savez(tmp_path / "bad.npz", other=idx)
    with pytest.raises(FlexsegError, match=r"bad\.npz.*key 'mask'"):
        read_labels(tmp_path / "bad.npz", MaskOptions(PALETTE))
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (0, 128, 0)  # green-ish: 128 from black, farther from red/blue
    cv2.imwrite(str(tmp_path / "c.png"), rgb)
    assert read_labels(tmp_path / "c.png", MaskOptions(PALETTE, color_tolerance=60))[1] == 1
    assert read_labels(tmp_path / "c.png", MaskOptions(PALETTE, color_tolerance=200))[1] == 0


def _palette_png(path: Path, indices: np.ndarray, colours: list[list[int]]) -> Path:
    im = Image.fromarray(indices.astype(np.uint8), mode="P")
    im.putpalette([v for c in colours for v in c] + [0, 0, 0] * (256 - len(colours)))
    im.save(path)
    return path


@pytest.mark.parametrize("mask_format", ["auto", "rgb", "gray", "index"])
@pytest.mark.parametrize("colours", [[[0, 0, 0], [255, 0, 0], [0, 0, 255]], [[0, 0, 0], [1, 1, 1], [2, 2, 2]]])
def test_palette_png_reads_as_class_indices_in_every_mask_format(tmp_path: Path, mask_format: str,
                                                                  colours: list[list[int]]) -> None:
    # The class colours as palette, or a gray ramp palette: indices 1 and 2 look near-black as colours.
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    path = _palette_png(tmp_path / "p.png", idx, colours)
    labels, unmatched = read_labels(path, MaskOptions(PALETTE, mask_format=mask_format))
    np.testing.assert_array_equal(labels, idx)
    assert unmatched == 0


def test_palette_png_whose_colours_contradict_its_indices_names_the_file(tmp_path: Path) -> None:
    # Index 1 is painted blue, class 2's colour: reading indices or colours would disagree.
    path = _palette_png(tmp_path / "swapped.png", np.array([[0, 1, 2]]), [[0, 0, 0], [0, 0, 255], [255, 0, 0]])
    for mask_format in ("auto", "rgb", "gray"):
        with pytest.raises(FlexsegError, match=r"swapped\.png.*index 1.*class 2"):
            read_labels(path, MaskOptions(PALETTE, mask_format=mask_format))
    labels, _ = read_labels(path, MaskOptions(PALETTE, mask_format="index"))  # indices asked for: taken as they are
    np.testing.assert_array_equal(labels, [[0, 1, 2]])


@pytest.mark.parametrize("size", [(5, 7), (13, 17), (9, 4)])
def test_masks_resize_with_nearest_only(tmp_path: Path, size: tuple[int, int]) -> None:
    # Class 0 (black) meets class 2 (blue) on an edge; class 1 lies between them in index space, so
    # any averaging resize of the indices (area, linear, cubic) would put class-1 pixels on the edge.
    bgr = np.zeros((9, 9, 3), np.uint8)
    bgr[:, 4:] = (255, 0, 0)  # blue: class 2
    bgr[6:, :] = (255, 0, 0)
    cv2.imwrite(str(tmp_path / "m.png"), bgr)
    out, _ = read_labels(tmp_path / "m.png", MaskOptions(PALETTE), size=size)
    assert out.shape == size
    assert set(np.unique(out)) == {0, 2}  # no in-between class 1
