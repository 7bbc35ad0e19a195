"""Tiled-mode files: lazy TIFF reading, streamed TIFF/PNG writing, one image end to end (numpy predictors)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from PIL import Image

from flexseg.data.readers import ImageOptions, MaskOptions
from flexseg.errors import FlexsegError
from flexseg.inference.image_io import ArrayReader, ModelInput, TiffReader, open_image, read_rgb
from flexseg.inference.segment import TiledOptions, segment_file
from flexseg.inference.sinks import TiffSink, choose_format
from flexseg.reporting import viz
from flexseg.scoring import labels_from_probs

PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)


def rgb_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def channel_predictor(batch: np.ndarray) -> np.ndarray:
    """Pixelwise: the normalised RGB channels are the class probabilities (label = brightest channel)."""
    return batch / np.maximum(batch.sum(-1, keepdims=True), 1e-6)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


TIFF_LAYOUTS = {
    "tiled-zlib": dict(tile=(64, 64), compression="zlib", photometric="rgb"),
    "strips": dict(rowsperstrip=7, photometric="rgb"),
    "one-strip": dict(photometric="rgb"),
    "planar-separate": dict(planarconfig="separate", rowsperstrip=16, compression="zlib", photometric="rgb"),
}


@pytest.mark.parametrize("layout", TIFF_LAYOUTS)
def test_tiff_reader_reads_any_rows_of_any_layout(tmp_path, layout):
    rgb = rgb_image(300, 517)
    data = np.moveaxis(rgb, -1, 0) if layout == "planar-separate" else rgb
    tifffile.imwrite(tmp_path / "a.tif", data, **TIFF_LAYOUTS[layout])
    reader = TiffReader(tmp_path / "a.tif", cache_rows=64)
    assert reader.shape == (300, 517, 3)
    for start, stop in [(0, 300), (0, 1), (5, 70), (63, 64), (64, 200), (299, 300), (100, 100)]:
        np.testing.assert_array_equal(reader.read_rows(start, stop), rgb[start:stop])
    reader.close()


@pytest.mark.parametrize(("dtype", "samples"), [(np.uint16, 1), (np.uint8, 1), (np.uint8, 4), (np.float32, 3)])
def test_tiff_reader_converts_gray_rgba_16_bit_and_float_to_rgb8(tmp_path, dtype, samples):
    rng = np.random.default_rng(1)
    shape = (40, 50) if samples == 1 else (40, 50, samples)
    if dtype == np.float32:
        data = rng.random(shape, dtype=np.float32)
        expected = (data * 255 + 0.5).astype(np.uint8)
    else:
        data = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
        expected = (data // 257).astype(np.uint8) if dtype == np.uint16 else data
    tifffile.imwrite(tmp_path / "g.tif", data, tile=(16, 16))
    expected = np.repeat(expected[..., None], 3, -1) if samples == 1 else expected[..., :3]
    with_reader = open_image(tmp_path / "g.tif")
    np.testing.assert_array_equal(with_reader.read_rows(0, 40), expected)


def test_tiff_reader_applies_a_palette(tmp_path):
    indices = np.random.default_rng(4).integers(0, 3, (40, 50)).astype(np.uint8)
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, :3] = PALETTE.T.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "p.tif", indices, photometric="palette", colormap=colormap, tile=(16, 16))
    np.testing.assert_array_equal(open_image(tmp_path / "p.tif").read_rows(0, 40), PALETTE[indices])


def test_unreadable_tiff_names_the_file(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(FlexsegError, match="bad.tif"):
        open_image(tmp_path / "bad.tif")


@pytest.mark.parametrize(("samples", "bands"), [(3, [37, 100, 1, 162]), (1, [300]), (5, [128, 128, 44])])
def test_tiff_sink_streams_bands_into_a_tiled_compressed_tiff(tmp_path, samples, bands):
    data = np.random.default_rng(2).integers(0, 256, (300, 517, samples), dtype=np.uint8)
    sink = TiffSink(tmp_path / "out" / "x.tif", 300, 517, samples, tile=64)
    top = 0
    for rows in bands:
        sink.write_rows(data[top : top + rows])
        top += rows
    sink.close()
    with tifffile.TiffFile(tmp_path / "out" / "x.tif") as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.tilelength == 64 and page.compression == 8  # zlib
        np.testing.assert_array_equal(page.asarray(), data[..., 0] if samples == 1 else data)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.tif"]  # no temp file left


def test_tiff_sink_switches_to_bigtiff_for_large_images(tmp_path, monkeypatch):
    monkeypatch.setattr("flexseg.inference.sinks.BIGTIFF_BYTES", 100 * 100 * 3 - 1)
    for name, height in (("big.tif", 100), ("small.tif", 99)):
        sink = TiffSink(tmp_path / name, height, 100, tile=64)
        sink.write_rows(np.zeros((height, 100, 3), np.uint8))
        sink.close()
    with tifffile.TiffFile(tmp_path / "big.tif") as big, tifffile.TiffFile(tmp_path / "small.tif") as small:
        assert big.is_bigtiff and not small.is_bigtiff


def test_tiff_sink_abort_leaves_no_file(tmp_path):
    sink = TiffSink(tmp_path / "x.tif", 300, 100, tile=64)
    sink.write_rows(np.zeros((100, 100, 3), np.uint8))
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_tiff_sink_reports_a_writer_failure_and_leaves_no_file(tmp_path):
    sink = TiffSink(tmp_path / "x.tif", 128, 100, tile=64)
    sink.write_rows(np.zeros((64, 100, 3), np.float32))  # not uint8: tifffile refuses it in the writer thread
    with pytest.raises(FlexsegError, match="Cannot write '.*x.tif'"):
        sink.write_rows(np.zeros((64, 100, 3), np.uint8))
        sink.close()
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_labels_from_probs_binary_and_multiclass():
    np.testing.assert_array_equal(labels_from_probs(np.array([[[0.2], [0.7]]])), [[0, 1]])
    np.testing.assert_array_equal(labels_from_probs(np.array([[[0.2, 0.5, 0.3]]])), [[1]])


def test_choose_format():
    assert choose_format("auto", Path("a.png"), 1000, 1000) == "png"
    assert choose_format("auto", Path("a.TIF"), 100, 100) == "tiff"
    assert choose_format("auto", Path("a.jpg"), 10000, 8000) == "tiff"
    assert choose_format("png", Path("a.tif"), 10, 10) == "png"


def test_read_rgb_converts_16_bit_gray_and_bgra_files_to_rgb8(tmp_path):
    gray16 = np.random.default_rng(5).integers(0, 65536, (12, 10), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), gray16)
    np.testing.assert_array_equal(read_rgb(tmp_path / "g.png"), np.repeat((gray16 // 257)[..., None], 3, -1))
    rgba = np.dstack([rgb_image(12, 10), np.full((12, 10), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgba[..., :3])
    (tmp_path / "bad.png").write_bytes(b"no image")
    with pytest.raises(FlexsegError, match="bad.png"):
        read_rgb(tmp_path / "bad.png")


@pytest.mark.parametrize(("suffix", "fmt"), [(".tif", "auto"), (".png", "auto"), (".png", "tiff")])
def test_segment_file_writes_mask_overlay_probabilities_and_scores(tmp_path, suffix, fmt):
    rgb = rgb_image(300, 517)
    (tmp_path / "in").mkdir()
    if suffix == ".tif":
        tifffile.imwrite(tmp_path / "in" / "img.tif", rgb, tile=(64, 64), compression="zlib", photometric="rgb")
    else:
        write_png(tmp_path / "in" / "img.png", rgb)
    truth = PALETTE[rgb.argmax(-1)]  # what a pixelwise predictor must find
    write_png(tmp_path / "masks" / "img.png", truth)
    starts: list[int] = []
    options = TiledOptions(tile_size=128, overlap=32, batch_size=3, output_format=fmt, save_probabilities=True)
    result = segment_file(tmp_path / "in" / f"img{suffix}", channel_predictor, options, ImageOptions(3), PALETTE, tmp_path / "out",
                          mask_path=tmp_path / "masks" / "img.png", on_start=starts.append)
    out_suffix = ".png" if (suffix, fmt) == (".png", "auto") else ".tif"
    assert result.outputs == {"masks": tmp_path / "out" / "masks" / f"img{out_suffix}",
                              "overlays": tmp_path / "out" / "overlays" / f"img{out_suffix}",
                              "probabilities": tmp_path / "out" / "probabilities" / "img.tif"}
    assert starts == [result.tiles] and result.shape == (300, 517)
    read = open_image(result.outputs["masks"]).read_rows(0, 300)
    np.testing.assert_array_equal(read, truth)
    labels = rgb.argmax(-1)
    np.testing.assert_array_equal(open_image(result.outputs["overlays"]).read_rows(0, 300),
                                  viz.overlay(rgb, labels, PALETTE))
    probs = tifffile.imread(result.outputs["probabilities"])
    expected = channel_predictor(rgb.astype(np.float32) / 255)
    assert probs.shape == (300, 517, 3) and np.abs(probs / 255 - expected).max() <= 0.5 / 255 + 1e-6
    assert result.confusion is not None
    np.testing.assert_array_equal(result.confusion, np.diag(np.bincount(labels.ravel(), minlength=3)))


def test_segment_file_with_a_binary_sigmoid_model(tmp_path):
    rgb = rgb_image(150, 260)
    tifffile.imwrite(tmp_path / "img.tif", rgb, photometric="rgb", rowsperstrip=16)
    palette = PALETTE[:2]
    result = segment_file(tmp_path / "img.tif", lambda b: b[..., :1], TiledOptions(64, 16, save_probabilities=True),
                          ImageOptions(3), palette, tmp_path / "out")
    np.testing.assert_array_equal(tifffile.imread(result.outputs["masks"]), palette[(rgb[..., 0] > 127).astype(int)])
    assert tifffile.imread(result.outputs["probabilities"]).shape == (150, 260)


def test_segment_file_rejects_a_mask_of_another_size(tmp_path):
    write_png(tmp_path / "img.png", rgb_image(100, 120))
    write_png(tmp_path / "m.png", rgb_image(100, 121))
    with pytest.raises(FlexsegError, match=r"m.png' is 121x100 but the image .* is 120x100"):
        segment_file(tmp_path / "img.png", channel_predictor, TiledOptions(tile_size=64, overlap=16), ImageOptions(3), PALETTE,
                     tmp_path / "out", mask_path=tmp_path / "m.png")


def test_a_failing_predictor_leaves_no_partial_outputs(tmp_path):
    tifffile.imwrite(tmp_path / "img.tif", rgb_image(600, 200), tile=(64, 64), photometric="rgb")
    calls = []

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("model crashed")
        return channel_predictor(batch)

    with pytest.raises(RuntimeError, match="model crashed"):
        segment_file(tmp_path / "img.tif", flaky, TiledOptions(tile_size=64, overlap=16, batch_size=2), ImageOptions(3), PALETTE,
                     tmp_path / "out")
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def _peak_traced_bytes(tmp_path: Path, height: int, width: int) -> int:
    name = f"img_{height}.tif"
    sink = TiffSink(tmp_path / name, height, width, tile=64)
    for top in range(0, height, 256):
        sink.write_rows(rgb_image(min(256, height - top), width, seed=top))
    sink.close()
    tracemalloc.start()
    segment_file(tmp_path / name, channel_predictor, TiledOptions(tile_size=64, overlap=16, batch_size=8),
                 ImageOptions(3), PALETTE, tmp_path / f"out_{height}")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert tifffile.imread(tmp_path / f"out_{height}" / "masks" / name).shape == (height, width, 3)
    return peak


def test_peak_memory_grows_with_width_not_with_height(tmp_path):
    """TIFF in, TIFF out: 8x the height (and area) must not raise the peak of traced allocations."""
    short = _peak_traced_bytes(tmp_path, 1024, 384)  # tall enough to fill the reader's row cache
    tall = _peak_traced_bytes(tmp_path, 8192, 384)
    whole_image_float = 8192 * 384 * 3 * 4  # what one full-size float32 accumulator alone would take
    assert tall < 1.3 * short and tall < 0.3 * whole_image_float


def test_model_input_scales_and_selects_channels():
    reader = ArrayReader(np.full((10, 20, 3), 255, np.uint8))
    view = ModelInput(reader, ImageOptions(1))
    assert view.shape == (10, 20, 1)
    band = view[2:6]
    assert band.shape == (4, 20, 1) and band.dtype == np.float32 and np.all(band == 1.0)


def write_palette_png(path: Path, indices: np.ndarray) -> Path:
    """A PIL mode 'P' PNG storing class indices, with a gray palette (index i shows as (i, i, i))."""
    image = Image.new("P", (indices.shape[1], indices.shape[0]))
    image.putdata(indices.ravel().tolist())
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def test_segment_file_scores_a_palette_png_mask_by_its_indices(tmp_path):
    """Bug 2: the tiled scorer read palette masks as near-black colours (all background), silently."""
    rgb = rgb_image(90, 110)
    write_png(tmp_path / "img.png", rgb)
    labels = rgb.argmax(-1).astype(np.uint8)  # what the pixelwise predictor finds
    write_palette_png(tmp_path / "masks" / "img.png", labels)
    result = segment_file(tmp_path / "img.png", channel_predictor, TiledOptions(tile_size=64, overlap=16),
                          ImageOptions(3), PALETTE, tmp_path / "out", mask_path=tmp_path / "masks" / "img.png",
                          mask_options=MaskOptions(PALETTE))
    np.testing.assert_array_equal(result.confusion, np.diag(np.bincount(labels.ravel(), minlength=3)))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_segment_file_stops_on_a_mask_of_foreign_colours(tmp_path, suffix):
    """Bug 2: unmatched mask pixels were dropped; now the training check stops, naming file, colour and key."""
    rgb = rgb_image(90, 110)
    write_png(tmp_path / "img.png", rgb)
    foreign = np.full((90, 110, 3), (40, 90, 200), np.uint8)  # far from every class colour
    mask = tmp_path / "masks" / f"img{suffix}"
    if suffix == ".tif":
        mask.parent.mkdir()
        tifffile.imwrite(mask, foreign, photometric="rgb", rowsperstrip=16)
    else:
        write_png(mask, foreign)
    with pytest.raises(FlexsegError, match=rf"img\{suffix}'.*\(40, 90, 200\) x 9,900.*dataset.max_unmatched=0.01"):
        segment_file(tmp_path / "img.png", channel_predictor, TiledOptions(tile_size=64, overlap=16),
                     ImageOptions(3), PALETTE, tmp_path / "out", mask_path=mask, mask_options=MaskOptions(PALETTE))
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_segment_file_reads_tiff_masks_by_bands_as_training_reads_them(tmp_path):
    """A 16-bit index TIFF: values are classes (not shrunk to 8 bits first), read band by band."""
    rgb = rgb_image(150, 70)
    write_png(tmp_path / "img.png", rgb)
    labels = rgb.argmax(-1)
    tifffile.imwrite(tmp_path / "m.tif", labels.astype(np.uint16), rowsperstrip=8)
    result = segment_file(tmp_path / "img.png", channel_predictor, TiledOptions(tile_size=64, overlap=16),
                          ImageOptions(3), PALETTE, tmp_path / "out", mask_path=tmp_path / "m.tif",
                          mask_options=MaskOptions(PALETTE, mask_format="index"))
    np.testing.assert_array_equal(result.confusion, np.diag(np.bincount(labels.ravel(), minlength=3)))
