"""Online augmentation: labels never invented, geometry shared by image and mask, seeded, p=0 is identity."""

from __future__ import annotations

import copy
import zlib
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import tensorflow as tf
from conftest import compose

from flexseg.config.schemas import AugmentConfig, ClassConfig
from flexseg.data.augment import DENSE, GEOMETRIC, OPS, Augmenter, build_augment
from flexseg.data.discovery import Split
from flexseg.data.masks import build_palette
from flexseg.data.pipeline import build_dataset
from flexseg.errors import FlexsegError

SIZE = 32
DRAWS = 200
LABELS = (0, 2, 5)  # gaps: an interpolated mask would show 1, 3 or 4


@pytest.fixture(scope="module")
def presets() -> dict[str, AugmentConfig]:
    return {name: compose([f"augment={name}"]).augment for name in ("none", "reference", "light", "strong")}


def _all_on(presets: dict[str, AugmentConfig]) -> AugmentConfig:
    """The reference preset with every op (pincushion, sharpening, jitters too) at p = 1."""
    cfg = copy.deepcopy(presets["reference"])
    for op in OPS:
        getattr(cfg, op).p = 1.0
    cfg.rotation.range = [-20.0, 20.0]  # angles [90, ...] plus jitter: not right angles
    for op, span in (("brightness", [-0.1, 0.1]), ("contrast", [0.8, 1.2]), ("gamma", [0.8, 1.2]),
                     ("noise", [0.0, 0.05]), ("blur", [0.5, 1.0])):
        getattr(cfg, op).range = span
    return cfg


def _only(cfg: AugmentConfig, *ops: str) -> AugmentConfig:
    out = copy.deepcopy(cfg)
    for op in OPS:
        if op not in ops:
            getattr(out, op).p = 0.0
    return out


def _inputs(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A blocky label map using LABELS, and an image of smooth noise."""
    rng = np.random.default_rng(7)
    blocks = rng.choice(LABELS, (size // 8, size // 8))
    labels = np.kron(blocks, np.ones((8, 8), np.int32)).astype(np.int32)
    image = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (5, 5), 1.0)
    return image, labels


def _run(cfg: AugmentConfig, image: np.ndarray, labels: np.ndarray, draws: int = DRAWS) -> tuple[np.ndarray, np.ndarray]:
    """`draws` augmentations (seeds 0..draws-1) in one tf.data pass."""
    aug = Augmenter(cfg)
    seeds = tf.stack([tf.range(draws, dtype=tf.int64), tf.fill([draws], tf.constant(3, tf.int64))], axis=1)
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda s: aug(tf.constant(image), tf.constant(labels), s), num_parallel_calls=2, deterministic=True)
    x, y = next(iter(ds.batch(draws)))
    return x.numpy(), y.numpy()


@pytest.mark.parametrize("op", OPS + ("all",))
def test_labels_stay_a_subset_of_the_input_labels(presets: dict[str, AugmentConfig], op: str) -> None:
    full = _all_on(presets)
    cfg = full if op == "all" else _only(full, op)
    image, labels = _inputs()
    x, y = _run(cfg, image, labels)
    assert set(np.unique(y)) <= set(LABELS), f"{op} invented labels {set(np.unique(y)) - set(LABELS)}"
    assert x.shape == (DRAWS, SIZE, SIZE, 3) and np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0
    if op in GEOMETRIC or op == "all":
        assert (y != labels).any(axis=(1, 2)).mean() > 0.5, f"{op} hardly changed the mask"
    else:
        np.testing.assert_array_equal(y, np.broadcast_to(labels, y.shape))  # photometric: mask untouched
        assert (np.abs(x - image) > 1e-3).any(axis=(1, 2, 3)).mean() > 0.9, f"{op} hardly changed the image"


def test_geometry_moves_image_and_mask_together(presets: dict[str, AugmentConfig]) -> None:
    """The image encodes its label (value = label / 5): after any warp, image and mask still agree."""
    _, labels = _inputs(64)
    image = np.repeat((labels / 5.0)[..., None], 3, axis=-1).astype(np.float32)
    x, y = _run(_only(_all_on(presets), *GEOMETRIC), image, labels, draws=50)
    decoded = np.rint(x[..., 0] * 5.0).astype(np.int32)
    kernel = np.ones((3, 3), np.uint8)
    interior = np.stack([cv2.erode(m, kernel) == cv2.dilate(m, kernel) for m in y.astype(np.uint8)])
    assert interior.mean() > 0.5 and (decoded == y)[interior].mean() > 0.995  # bilinear mixes only at edges


@pytest.mark.parametrize("ops", [GEOMETRIC, ("rotation", "shrink", "shear")])  # dense and affine resampling
def test_reflect_fill_mirrors_the_mask_too(presets: dict[str, AugmentConfig], ops: tuple[str, ...]) -> None:
    """With fill_mode=reflect nothing is filled with background: a mask without 0 never gains one."""
    cfg = _only(_all_on(presets), *ops)
    cfg.fill_mode = "reflect"
    image, labels = _inputs()
    labels = np.where(labels == 0, 2, labels).astype(np.int32)
    _, y = _run(cfg, image, labels, draws=50)
    assert set(np.unique(y)) == {2, 5}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        (("hflip",), lambda a: a[:, ::-1]),
        (("vflip",), lambda a: a[::-1]),
        (("hflip", "vflip"), lambda a: a[::-1, ::-1]),
    ],
)
def test_flips_are_exact_permutations(
    presets: dict[str, AugmentConfig], ops: tuple[str, ...], expected: Callable[[np.ndarray], np.ndarray]
) -> None:
    cfg = _only(_all_on(presets), *ops)
    image, labels = _inputs()
    x, y = _run(cfg, image, labels, draws=2)
    np.testing.assert_array_equal(x[0], expected(image))
    np.testing.assert_array_equal(y[0], expected(labels))


@pytest.mark.parametrize("angle", [90.0, 180.0, 270.0, -90.0])
@pytest.mark.parametrize("dense", [False, True])
def test_right_angle_rotations_are_exact_permutations(
    presets: dict[str, AugmentConfig], angle: float, dense: bool
) -> None:
    """Counter-clockwise like cv2; exact through both resamplers (affine, and dense with a zero field)."""
    cfg = _only(_all_on(presets), "rotation", *(("deformation",) if dense else ()))
    cfg.rotation.angles, cfg.rotation.range = [angle], []
    cfg.deformation.alpha = 0.0
    image, labels = _inputs()
    x, y = _run(cfg, image, labels, draws=2)
    k = int(angle // 90) % 4
    np.testing.assert_array_equal(x[0], np.rot90(image, k))
    np.testing.assert_array_equal(y[0], np.rot90(labels, k))


def test_p0_is_the_identity(presets: dict[str, AugmentConfig]) -> None:
    off = _only(_all_on(presets))
    assert build_augment(off) is None and build_augment(presets["none"]) is None
    image, labels = _inputs()
    x, y = _run(off, image, labels, draws=4)
    np.testing.assert_array_equal(x, np.broadcast_to(image, x.shape))
    np.testing.assert_array_equal(y, np.broadcast_to(labels, y.shape))


def test_same_seed_same_draws_other_seed_other_draws(presets: dict[str, AugmentConfig]) -> None:
    aug = build_augment(_all_on(presets))
    image, labels = (tf.constant(a) for a in _inputs())
    first = aug(image, labels, tf.constant([5, 6], tf.int64))
    again = aug(image, labels, tf.constant([5, 6], tf.int64))
    other = aug(image, labels, tf.constant([5, 7], tf.int64))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(first[0].numpy(), other[0].numpy())


def _write_pairs(root: Path, n: int) -> Split:
    classes = [ClassConfig("bg", [0, 0, 0]), ClassConfig("a", [255, 0, 0])]
    images, masks = [], []
    for i in range(n):
        rng = np.random.default_rng(zlib.crc32(f"p{i}".encode()))
        labels = np.kron(rng.integers(0, 2, (4, 4)), np.ones((8, 8), np.int64))
        images.append(str(root / f"p{i}_img.png"))
        masks.append(str(root / f"p{i}_mask.png"))
        cv2.imwrite(images[-1], rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        cv2.imwrite(masks[-1], cv2.cvtColor(build_palette(classes)[labels], cv2.COLOR_RGB2BGR))
    return Split("train", tuple(images), tuple(masks))


def test_pipeline_batches_are_seeded(presets: dict[str, AugmentConfig], tmp_path: Path) -> None:
    """Through build_dataset's parallel map: same seed, same batches; new seed or new epoch, new batches."""
    split = _write_pairs(tmp_path, 4)
    palette = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)
    aug = build_augment(_all_on(presets))

    def batches(seed: int) -> list[np.ndarray]:
        ds = build_dataset(split, palette, (32, 32), 3, 2, batch_size=2, shuffle=True, seed=seed, repeat=True,
                           augment=aug)
        return [np.concatenate([x.numpy().ravel(), y.numpy().ravel()]) for x, y in ds.take(4)]

    a, b, c = batches(1), batches(1), batches(2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(np.sort(a[0]), np.sort(a[2]))  # epoch 2 draws anew


def test_misspelled_op_key_fails_composition() -> None:
    with pytest.raises(Exception, match="rotaton"):
        compose(["augment=reference", "augment.rotaton.p=0.5"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("augment.rotation.p=1.5", "augment.rotation.p=1.5"),
        ("augment.shrink.factors=[0.8,-1]", "augment.shrink"),
        ("augment.barrdistortion.amount=-1", "augment.barrdistortion"),
        ("augment.gamma.range=[1.5,0.7]", "augment.gamma.range"),
    ],
)
def test_bad_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(FlexsegError, match=key.replace("[", r"\[")):
        build_augment(compose(["augment=reference", override]).augment)


def test_reference_preset_keeps_the_reference_values(presets: dict[str, AugmentConfig]) -> None:
    ref = presets["reference"]
    assert ref.rotation.angles == [90, 180, 210, 270] and ref.shrink.factors == [0.8] and ref.shear.factors == [0.1]
    assert (ref.distortion.gaussian_filter_rsigma, ref.distortion.gaussian_filter_sigma) == (40, 0.5)
    assert ref.distortion.distortions == [0.02] and ref.deformation.sigma == 8
    assert (ref.barrdistortion.radius, ref.barrdistortion.amount, len(ref.barrdistortion.centers)) == (0.3, 0.3, 5)
    assert ref.sharpening.p == 0 and ref.brightening.p == 0  # available but off in tiled_cell
    assert set(DENSE) <= set(GEOMETRIC)
    for name in ("reference", "light", "strong"):
        assert isinstance(build_augment(presets[name]), Augmenter)
