"""Tiled prediction with trivial predictors: no TensorFlow, all fast and deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from flexseg.inference.sliding_window import (
    BLEND_MODES,
    compute_blend_weights,
    compute_tile_starts,
    count_tiles,
    iter_tiled_bands,
    predict_tiled,
    predict_with_flips,
    resolve_overlap,
)

TILE = 128


def constant_predictor(probs: np.ndarray):
    """A predictor that returns ``probs`` (K,) at every pixel of every tile."""

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.broadcast_to(probs, batch.shape[:3] + probs.shape).astype(np.float32)

    return predict


def identity_predictor(batch: np.ndarray) -> np.ndarray:
    """Returns the input channels as "probabilities": tiling must reproduce the image."""
    return batch.copy()


def row_col_predictor(batch: np.ndarray) -> np.ndarray:
    """Not translation invariant: (row, col) index of each pixel within its tile."""
    n, h, w, _ = batch.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    grid = np.stack([rows, cols], axis=-1).astype(np.float32)
    return np.broadcast_to(grid, (n, h, w, 2)).copy()


def random_image(height: int, width: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(0).random((height, width, channels), dtype=np.float32)


@pytest.mark.parametrize("blend", BLEND_MODES)
@pytest.mark.parametrize(("height", "width", "overlap"), [(300, 517, 32), (1000, 1000, 64)])
def test_constant_predictor_gives_constant_everywhere(blend, height, width, overlap):
    probs = np.array([0.2, 0.3, 0.5], dtype=np.float32)
    out = predict_tiled(
        random_image(height, width), constant_predictor(probs), TILE, overlap, blend=blend
    )
    assert out.shape == (height, width, 3)
    assert out.dtype == np.float32
    # No seams and no holes: every pixel, borders and corners included, is the constant.
    np.testing.assert_allclose(out, np.broadcast_to(probs, out.shape), rtol=0, atol=1e-6)


@pytest.mark.parametrize("blend", BLEND_MODES)
@pytest.mark.parametrize(
    ("height", "width", "overlap"),
    [(300, 517, 32), (1000, 1000, 64), (128, 128, 32), (129, 300, 0), (50, 70, 32), (1, 1, 0)],
)
def test_identity_predictor_reproduces_image(blend, height, width, overlap):
    image = random_image(height, width)
    out = predict_tiled(image, identity_predictor, TILE, overlap, blend=blend)
    assert out.shape == image.shape
    np.testing.assert_allclose(out, image, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(50, 70), (70, 50), (5, 400), (400, 5), (1, 200)])
def test_small_and_non_square_images_keep_their_shape(height, width):
    image = random_image(height, width, channels=1)
    probs = np.array([0.6, 0.4], dtype=np.float32)
    out = predict_tiled(image, constant_predictor(probs), TILE, 32)
    assert out.shape == (height, width, 2)
    np.testing.assert_allclose(out, np.broadcast_to(probs, out.shape), atol=1e-6)
    np.testing.assert_allclose(predict_tiled(image, identity_predictor, TILE, 32), image, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(50, 70), (100, 20), (1, 200)])
def test_small_images_are_reflect_padded_where_reflection_fits(height, width):
    image = random_image(height, width)
    seen: list[np.ndarray] = []

    def recording_identity(batch: np.ndarray) -> np.ndarray:
        seen.append(batch)
        return batch

    predict_tiled(image, recording_identity, TILE, 32, batch_size=1)
    first = seen[0][0]  # the top-left tile, padded at the bottom/right
    cols = min(width, TILE)
    np.testing.assert_array_equal(first[:height, :cols], image[:, :cols])
    pad = TILE - height
    if pad < height:  # reflection fits: the padding mirrors the rows above it
        expected = image[height - 2 : height - 2 - pad : -1, :cols]
    else:  # too few rows to mirror: the last row is repeated
        expected = np.repeat(image[-1:, :cols], pad, axis=0)
    np.testing.assert_array_equal(first[height:, :cols], expected)


@pytest.mark.parametrize("blend", BLEND_MODES)
def test_position_dependent_predictor_blends_only_in_overlaps(blend):
    # One column of tiles (width == tile), so the row channel depends on the row tiling alone.
    height, overlap = 300, 32
    out = predict_tiled(random_image(height, TILE), row_col_predictor, TILE, overlap, blend=blend)
    whole = row_col_predictor(random_image(height, TILE)[None])[0]  # the image as one tile
    starts = np.array(compute_tile_starts(height, TILE, overlap))
    rows = np.arange(height)
    covers = (rows[:, None] >= starts) & (rows[:, None] < starts + TILE)  # (H, n_tiles)
    single = covers.sum(axis=1) == 1

    tol = {"rtol": 1e-6, "atol": 1e-5}  # float32 sums of indices up to 127
    # The column channel is the same in every tile, so it equals the whole-image output.
    np.testing.assert_allclose(out[..., 1], whole[..., 1], **tol)
    # Away from overlaps: the only covering tile's local row, i.e. whole-image row - tile start.
    only_start = starts[covers.argmax(axis=1)]
    expected_single = (whole[..., 0] - only_start[:, None])[single]
    np.testing.assert_allclose(out[single, :, 0], expected_single, **tol)
    # In overlaps: the weight-normalised mean of the covering tiles' local rows.
    weights = compute_blend_weights(TILE, blend)
    local = rows[:, None] - starts  # (H, n_tiles)
    w = np.where(covers[..., None], weights[np.clip(local, 0, TILE - 1)], 0.0)  # (H, n, W)
    expected = (w * local[..., None]).sum(axis=1) / w.sum(axis=1)
    np.testing.assert_allclose(out[..., 0], expected, **tol)
    assert not np.allclose(out[~single, :, 0], whole[~single, :, 0])


def test_position_dependent_predictor_matches_whole_image_inside_first_tile():
    out = predict_tiled(random_image(300, 517), row_col_predictor, TILE, 32)
    whole = row_col_predictor(random_image(300, 517)[None])[0]
    rows, cols = compute_tile_starts(300, TILE, 32), compute_tile_starts(517, TILE, 32)
    inner = (slice(0, rows[1]), slice(0, cols[1]))  # covered by the first tile only
    np.testing.assert_allclose(out[inner], whole[inner], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [
        (128, 128, 32),
        (129, 128, 32),
        (300, 128, 32),
        (517, 128, 64),
        (1000, 128, 0),
        (1000, 100, 99),
    ],
)
def test_tile_starts_cover_the_length(length, tile, overlap):
    starts = compute_tile_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts[-1] == length - tile
    steps = np.diff(starts)
    assert np.all(steps > 0)
    assert np.all(steps <= tile - overlap)  # neighbours share at least `overlap` pixels
    assert len(steps) == 0 or steps.max() - steps.min() <= 1  # as even as possible
    covered = np.zeros(length, dtype=bool)
    for start in starts:
        covered[start : start + tile] = True
    assert covered.all()


def test_tile_equal_to_length_gives_one_start():
    assert compute_tile_starts(128, 128, 64) == [0]


@pytest.mark.parametrize("batch_size", [1, 3, 4, 7, 100])
def test_batches_respect_batch_size_and_count_tiles(batch_size):
    height, width, overlap = 300, 517, 32
    seen: list[tuple[int, ...]] = []
    done: list[int] = []

    def recording_predictor(batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32
        seen.append(batch.shape)
        return identity_predictor(batch)

    predict_tiled(
        random_image(height, width),
        recording_predictor,
        TILE,
        overlap,
        batch_size=batch_size,
        progress=done.append,
    )
    total = count_tiles(height, width, TILE, overlap)
    sizes = [shape[0] for shape in seen]
    assert all(shape[1:] == (TILE, TILE, 3) for shape in seen)
    assert all(size == batch_size for size in sizes[:-1]) and 0 < sizes[-1] <= batch_size
    assert sum(sizes) == total == sum(done)
    assert done == sizes


def test_count_tiles_for_images_smaller_than_a_tile():
    assert count_tiles(50, 70, TILE, 32) == 1
    assert count_tiles(50, 300, TILE, 32) == len(compute_tile_starts(300, TILE, 32))


@pytest.mark.parametrize("overlap", [-1, 128, 200])
def test_bad_overlap_raises_with_the_value(overlap):
    with pytest.raises(ValueError, match=f"got {overlap}"):
        compute_tile_starts(300, TILE, overlap)
    with pytest.raises(ValueError, match=f"got {overlap}"):
        predict_tiled(random_image(300, 300), identity_predictor, TILE, overlap)


def test_length_smaller_than_tile_raises():
    with pytest.raises(ValueError, match="got 50"):
        compute_tile_starts(50, TILE, 32)


def test_unknown_blend_mode_lists_valid_modes():
    with pytest.raises(ValueError, match="gaussian.*constant.*'cosine'"):
        compute_blend_weights(TILE, "cosine")


def test_bad_image_and_predictor_shapes_raise():
    with pytest.raises(ValueError, match=r"\(300, 300\)"):
        predict_tiled(np.zeros((300, 300), np.float32), identity_predictor, TILE, 32)
    with pytest.raises(ValueError, match=r"got \(1, 64, 64, 3\)"):
        predict_tiled(random_image(100, 100), lambda b: b[:, :64, :64], TILE, 32)


@pytest.mark.parametrize("tile", [1, 2, 7, 128, 512])
def test_gaussian_weights_have_no_zeros_and_max_one(tile):
    weights = compute_blend_weights(tile, "gaussian")
    assert weights.shape == (tile, tile) and weights.dtype == np.float32
    assert weights.min() > 0
    assert weights.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(weights, weights.T)
    np.testing.assert_array_equal(weights, weights[::-1, ::-1])


def test_blend_weights_are_cached_and_read_only():
    weights = compute_blend_weights(TILE, "gaussian")
    assert compute_blend_weights(TILE, "gaussian") is weights
    with pytest.raises(ValueError):
        weights[0, 0] = 0.0
    np.testing.assert_array_equal(compute_blend_weights(TILE, "constant"), 1.0)


# --------------------------------------------------------------------------- issue 6: overlap as a
# fraction, streaming bands, lazy images, whole-image equivalence, flip TTA


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def local_predictor(radius: int = 3):
    """A tiny "conv net": per-channel box mean over (2r+1)^2 with zero padding, then softmax.

    Translation equivariant with a finite receptive field, so it is exact wherever the window
    lies inside the tile, and wrong (zero padding) only near tile borders, like a real CNN.
    """

    def predict(batch: np.ndarray) -> np.ndarray:
        n, h, w, c = batch.shape
        padded = np.pad(batch.astype(np.float64), [(0, 0), (radius, radius), (radius, radius), (0, 0)])
        sums = padded.cumsum(1).cumsum(2)
        sums = np.pad(sums, [(0, 0), (1, 0), (1, 0), (0, 0)])
        k = 2 * radius + 1
        box = sums[:, k:, k:] - sums[:, :-k, k:] - sums[:, k:, :-k] + sums[:, :-k, :-k]
        return softmax(8.0 * box / k**2).astype(np.float32)

    return predict


class LazyRows:
    """An image known only by its shape and row slices; records every read."""

    def __init__(self, image: np.ndarray) -> None:
        self.image, self.shape, self.reads = image, image.shape, []

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        self.reads.append((start, stop))
        return self.image[start:stop]


@pytest.mark.parametrize(("overlap", "tile", "pixels"), [(64, 256, 64), (64.0, 256, 64), (0.25, 256, 64),
                                                          (0.5, 128, 64), (0, 128, 0), (0.001, 128, 0)])
def test_overlap_in_pixels_or_as_a_fraction(overlap, tile, pixels):
    assert resolve_overlap(overlap, tile) == pixels


@pytest.mark.parametrize("overlap", [12.5, -0.5, 256, 300])
def test_bad_overlap_values_raise_with_the_value(overlap):
    with pytest.raises(ValueError, match=f"got {overlap}"):
        resolve_overlap(overlap, 256)


def test_fractional_overlap_tiles_like_the_same_pixels():
    image = random_image(300, 517)
    np.testing.assert_array_equal(
        predict_tiled(image, row_col_predictor, TILE, 0.25), predict_tiled(image, row_col_predictor, TILE, 32)
    )
    assert count_tiles(300, 517, TILE, 0.25) == count_tiles(300, 517, TILE, 32)


@pytest.mark.parametrize(("height", "width", "overlap"), [(300, 517, 32), (1000, 130, 64), (50, 70, 32), (129, 128, 0)])
def test_bands_are_consecutive_final_rows_and_equal_the_whole_output(height, width, overlap):
    image = random_image(height, width)
    bands = list(iter_tiled_bands(image, row_col_predictor, TILE, overlap, batch_size=3))
    tops = [top for top, _ in bands]
    assert tops[0] == 0 and all(b.shape[1:] == (width, 2) for _, b in bands)
    assert [top + len(b) for top, b in bands][:-1] == tops[1:]  # no gap, no overlap
    assert tops[-1] + len(bands[-1][1]) == height
    assert all(len(b) <= TILE for _, b in bands)  # never more than one tile row in flight
    whole = predict_tiled(image, row_col_predictor, TILE, overlap)
    np.testing.assert_array_equal(np.concatenate([b for _, b in bands]), whole)


@pytest.mark.parametrize("batch_size", [1, 2, 5, 11, 64])
def test_batches_spanning_tile_rows_give_the_same_output(batch_size):
    image = random_image(700, 300)  # 3 tiles per row: batches of 5/11/64 span 2..all rows
    reference = predict_tiled(image, row_col_predictor, TILE, 32, batch_size=4)
    np.testing.assert_allclose(predict_tiled(image, row_col_predictor, TILE, 32, batch_size=batch_size),
                               reference, rtol=0, atol=1e-5)


def test_lazy_image_is_read_one_band_at_a_time_top_to_bottom():
    height, width = 2000, 300
    lazy = LazyRows(random_image(height, width))
    out = predict_tiled(lazy, identity_predictor, TILE, 32)
    np.testing.assert_allclose(out, lazy.image, atol=1e-5)
    starts = compute_tile_starts(height, TILE, 32)
    assert lazy.reads == [(y, y + TILE) for y in starts]  # each tile row read once, in order


@pytest.mark.parametrize("blend", BLEND_MODES)
@pytest.mark.parametrize("tta", [False, True])
@pytest.mark.parametrize(("height", "width"), [(777, 1234), (128, 128), (37, 600), (1, 1)])
def test_constant_model_is_exactly_constant_everywhere(blend, tta, height, width):
    probs = np.array([0.1, 0.7, 0.2], dtype=np.float32)
    out = predict_tiled(random_image(height, width), constant_predictor(probs), TILE, 64, blend=blend, tta=tta)
    assert out.shape == (height, width, 3)
    # No seams, no weight holes at borders or corners: every pixel is the constant (float32 rounding).
    assert np.abs(out - probs).max() <= 1e-6


@pytest.mark.parametrize(("height", "width"), [(256, 256), (512, 384), (300, 517)])
def test_tiled_equals_whole_image_except_within_blending_tolerance(height, width):
    """Acceptance: <= 0.5% of pixels change label at overlap >= 64 (here: tile 128, overlap 64)."""
    image = random_image(height, width)
    predictor = local_predictor(radius=3)
    whole = predictor(image[None])[0].argmax(-1)
    tiled = predict_tiled(image, predictor, TILE, 64).argmax(-1)
    assert np.mean(tiled != whole) <= 0.005


def test_tta_with_a_flip_equivariant_model_equals_no_tta():
    image = random_image(300, 517)
    predictor = local_predictor(radius=2)  # symmetric box: flip equivariant
    np.testing.assert_allclose(
        predict_tiled(image, predictor, TILE, 32, tta=True), predict_tiled(image, predictor, TILE, 32),
        rtol=0, atol=1e-6,
    )


def test_tta_averages_the_four_flips_flipped_back():
    calls: list[np.ndarray] = []

    def recording(batch: np.ndarray) -> np.ndarray:
        calls.append(batch)
        return row_col_predictor(batch)

    batch = random_image(TILE, TILE)[None]
    out = predict_with_flips(batch, recording)
    assert len(calls) == 4
    np.testing.assert_array_equal(calls[1], batch[:, ::-1])
    np.testing.assert_array_equal(calls[3], batch[:, ::-1, ::-1])
    # Local row r and its mirror T-1-r average to the tile centre, in both channels.
    np.testing.assert_allclose(out, (TILE - 1) / 2, atol=1e-5)


def test_tta_progress_counts_tiles_not_flips():
    done: list[int] = []
    predict_tiled(random_image(300, 517), identity_predictor, TILE, 32, progress=done.append, tta=True)
    assert sum(done) == count_tiles(300, 517, TILE, 32)
