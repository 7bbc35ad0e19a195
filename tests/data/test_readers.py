"""Every image and mask kind reads into the same arrays; bad values get clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from flexseg.config.schemas import ClassConfig
from flexseg.data.masks import build_palette
from flexseg.data.readers import ImageOptions, MaskOptions, read_image, read_labels, resolve_color_converter
from flexseg.errors import FlexsegError

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


def test_masks_resize_with_nearest_only(tmp_path: Path) -> None:
    labels = np.zeros((9, 9, 3), np.uint8)
    labels[:, :4] = (0, 0, 255)  # red
    labels[:, 6:] = (255, 0, 0)  # blue
    cv2.imwrite(str(tmp_path / "m.png"), labels)
    out, _ = read_labels(tmp_path / "m.png", MaskOptions(PALETTE), size=(5, 7))
    assert out.shape == (5, 7) and set(np.unique(out)) == {0, 1, 2}
