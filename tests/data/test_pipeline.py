"""The tf.data pipeline: shapes, one-hot/binary targets, nearest-neighbour mask resizing."""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import pytest
import numpy as np
from bad_data import EDGE_PALETTE, antialiased_mask

from flexseg.config.schemas import ClassConfig
from flexseg.data.discovery import Split
from flexseg.data.masks import build_palette
from flexseg.data.pipeline import build_dataset, build_image_dataset
from flexseg.scoring import labels_from_probs

CLASSES = [ClassConfig("bg", [0, 0, 0]), ClassConfig("a", [255, 0, 0]), ClassConfig("b", [0, 0, 255])]


def _pair(tmp_path: Path, name: str, size: tuple[int, int]) -> tuple[str, str]:
    h, w = size
    labels = np.zeros((h, w), np.uint8)
    labels[: h // 2, : w // 3] = 1
    labels[h // 2 :, w // 2 :] = 2
    rgb = build_palette(CLASSES)[labels]
    img, mask = tmp_path / f"{name}_img.png", tmp_path / f"{name}_mask.png"
    cv2.imwrite(str(img), np.random.default_rng(zlib.crc32(name.encode())).integers(0, 256, (h, w, 3), dtype=np.uint8))
    cv2.imwrite(str(mask), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(img), str(mask)


def test_batches_have_model_shapes_and_one_hot_targets(tmp_path: Path) -> None:
    pairs = [_pair(tmp_path, f"p{i}", (45, 61)) for i in range(3)]
    split = Split("train", tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
    ds = build_dataset(split, build_palette(CLASSES), (32, 32), 3, 3, batch_size=2)
    batches = list(ds)
    x, y = batches[0]
    assert x.shape == (2, 32, 32, 3) and y.shape == (2, 32, 32, 3)
    assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0
    target = y.numpy()
    np.testing.assert_array_equal(target.sum(-1), 1.0)  # exactly one class per pixel after resizing
    assert set(np.unique(labels_from_probs(target))) == {0, 1, 2}
    assert [b[0].shape[0] for b in batches] == [2, 1]


def test_binary_target_for_one_output(tmp_path: Path) -> None:
    img, mask = _pair(tmp_path, "p", (32, 32))
    ds = build_dataset(Split("t", (img,), (mask,)), build_palette(CLASSES), (32, 32), 3, 1, batch_size=1)
    _, y = next(iter(ds))
    assert y.shape == (1, 32, 32, 1)
    assert set(np.unique(y.numpy())) == {0.0, 1.0}


def test_image_dataset_keeps_order_and_channels(tmp_path: Path) -> None:
    values = [200, 10, 120, 60, 250, 30, 90]  # one gray level per image, in no sorted order
    paths = []
    for i, v in enumerate(values):
        paths.append(str(tmp_path / f"v{v:03d}.png"))  # names in no sorted order either
        cv2.imwrite(paths[-1], np.full((20 + 7 * i, 30), v, np.uint8))  # sizes differ: decode times differ
    batches = list(build_image_dataset(paths, (16, 16), 1, batch_size=3))
    assert [tuple(b.shape) for b in batches] == [(3, 16, 16, 1), (3, 16, 16, 1), (1, 16, 16, 1)]
    seen = [round(float(x.mean()) * 255) for b in batches for x in b.numpy()]
    assert seen == values  # the i-th image yielded is the i-th path given


def _purple_pair(tmp_path: Path) -> tuple[str, str]:
    img, mask = tmp_path / "purple_img.png", tmp_path / "purple_mask.png"
    cv2.imwrite(str(img), np.zeros((16, 16, 3), np.uint8))
    cv2.imwrite(str(mask), np.full((16, 16, 3), (200, 0, 200), np.uint8))
    return str(img), str(mask)


def test_mask_colours_outside_tolerance_stop_with_the_file_named(tmp_path: Path) -> None:
    import tensorflow as tf

    from flexseg.data.pipeline import ReadOptions
    from flexseg.errors import ERROR_MARKER
    from flexseg.data.readers import ImageOptions, MaskOptions

    good = _pair(tmp_path, "ok", (16, 16))
    bad = _purple_pair(tmp_path)
    split = Split("train", (good[0], bad[0]), (good[1], bad[1]))
    palette = build_palette(CLASSES)
    ds = build_dataset(split, palette, (16, 16), 3, 3, batch_size=2)
    with pytest.raises(tf.errors.OpError) as info:
        list(ds)
    assert ERROR_MARKER in str(info.value) and "purple_mask.png" in str(info.value)
    assert "dataset.color_tolerance=60" in str(info.value)
    skip = ReadOptions(ImageOptions(3), MaskOptions(palette), on_bad_file="skip")
    batches = list(build_dataset(split, palette, (16, 16), 3, 3, batch_size=2, options=skip))
    assert [b[0].shape[0] for b in batches] == [1]  # the bad pair is left out


def test_cache_and_shuffle_are_seeded(tmp_path: Path) -> None:
    pairs = [_pair(tmp_path, f"p{i}", (16, 16)) for i in range(6)]
    split = Split("train", tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def first_epoch(cache: bool, seed: int) -> list[float]:
        ds = build_dataset(split, build_palette(CLASSES), (16, 16), 3, 3, 2, shuffle=True, seed=seed, cache=cache)
        return [round(float(x.numpy().sum()), 3) for x, _ in ds.unbatch()]  # one number per pair

    assert first_epoch(False, 1) == first_epoch(False, 1)
    assert first_epoch(True, 1) == first_epoch(True, 1)
    assert sorted(first_epoch(True, 1)) == sorted(first_epoch(False, 1))  # the same pairs, each once


def test_workers_shards_take_each_pair_once_per_epoch(tmp_path: Path) -> None:
    """A multi-worker training's shards: disjoint, together the whole split, a new split every epoch."""
    pairs = [_pair(tmp_path, f"p{i}", (8, 8)) for i in range(10)]
    split = Split("train", tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def epochs(index: int) -> list[list[float]]:
        ds = build_dataset(split, build_palette(CLASSES), (8, 8), 3, 3, 4, shuffle=True, seed=3, shard=(2, index))
        assert ds.options().experimental_distribute.auto_shard_policy.name == "OFF"  # no second sharding
        return [[round(float(x.numpy().sum()), 3) for x, _ in ds.unbatch()] for _ in range(2)]

    (a1, a2), (b1, b2) = epochs(0), epochs(1)
    everything = sorted(round(float(x.numpy().sum()), 3) for x, _ in build_dataset(
        split, build_palette(CLASSES), (8, 8), 3, 3, 4).unbatch())
    assert len(a1) == len(b1) == 5 and sorted(a1 + b1) == sorted(a2 + b2) == everything
    assert sorted(a1) != sorted(a2)  # each epoch's shuffled order is split anew


def _class_folders(tmp_path: Path, per_class: int = 200) -> Split:
    """Pairs of a per-class layout (train/<class>/images), listed as discovery does: sorted by class."""
    images, masks = [], []
    for k in range(3):
        for i in range(per_class):
            img, mask = tmp_path / f"c{k}" / "images" / f"{i:03d}.png", tmp_path / f"c{k}" / "masks" / f"{i:03d}.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            mask.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(img), np.full((4, 4), 100 * k + i % 50, np.uint8))  # the class in the gray level
            cv2.imwrite(str(mask), np.zeros((4, 4, 3), np.uint8))
            images.append(str(img))
            masks.append(str(mask))
    return Split("train", tuple(images), tuple(masks))


@pytest.mark.parametrize("cache", [False, True])
def test_shuffle_mixes_classes_of_a_per_class_layout_every_epoch(tmp_path: Path, cache: bool) -> None:
    split = _class_folders(tmp_path)

    def epochs(seed: int, count: int = 2) -> list[list[int]]:
        ds = build_dataset(split, build_palette(CLASSES), (4, 4), 1, 3, 8, shuffle=True, seed=seed, cache=cache)
        levels = lambda x: (np.round(x.numpy().mean(axis=(1, 2, 3)) * 255) // 100).astype(int).tolist()  # noqa: E731
        return [[k for x, _ in ds for k in levels(x)] for _ in range(count)]

    first, second = epochs(seed=5)
    assert sorted(first) == sorted(second) == [0] * 200 + [1] * 200 + [2] * 200  # every pair once per epoch
    assert len(set(first[:8])) > 1  # the first batch already draws from more than one class folder
    assert 2 in first[:24]  # ... and the last folder (out of reach of a 256-name buffer over sorted names)
    assert first != second  # a new order every epoch
    assert epochs(seed=5, count=1) == [first]  # seeded: repeatable


def test_antialiased_masks_train_and_foreign_colours_stop_naming_them(tmp_path: Path) -> None:
    """Issue 11: 3 % of blended edge pixels stopped training (dataset.max_unmatched=0.01)."""
    import tensorflow as tf

    mask, truth = antialiased_mask()
    img, path = tmp_path / "edges_img.png", tmp_path / "edges_mask.png"
    cv2.imwrite(str(img), np.zeros((100, 100, 3), np.uint8))
    cv2.imwrite(str(path), cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))
    ds = build_dataset(Split("train", (str(img),), (str(path),)), EDGE_PALETTE, (100, 100), 3, 3, batch_size=1)
    ((_, y),) = list(ds)  # the default tolerance (60) and max_unmatched (0.01)
    np.testing.assert_array_equal(labels_from_probs(y.numpy()[0]), truth)  # edges: the nearer class
    mask[10:20, 40:60] = mask[60:70, 70:100] = (255, 0, 255)  # 5 % magenta: no class, no blend of two
    cv2.imwrite(str(path), cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))
    with pytest.raises(tf.errors.OpError) as info:
        list(ds)
    assert "edges_mask.png" in str(info.value) and "(255, 0, 255) x 500" in str(info.value)
    assert "dataset.max_unmatched=0.01" in str(info.value)
