"""k-fold splits: deterministic by pair key, disjoint and covering, balanced, stratified by class presence."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from bad_data import write_png
from conftest import compose

from flexseg.config.schemas import ClassConfig, DatasetConfig
from flexseg.data.discovery import build_split
from flexseg.data.folds import build_fold_splits, compute_folds
from flexseg.data.readers import options_from_config
from flexseg.errors import FlexsegError

CLASSES = [ClassConfig("bg", [0, 0, 0]), ClassConfig("a", [255, 0, 0]), ClassConfig("b", [0, 255, 0])]


def _keys(n: int) -> list[str]:
    return [f"img_{i:02d}" for i in range(n)]


def test_folds_depend_on_the_pairs_not_their_order() -> None:
    keys = _keys(20)
    signatures = [(1,) if i % 3 else (1, 2) for i in range(20)]
    folds = dict(zip(keys, compute_folds(keys, signatures, 4, seed=7)))
    order = np.random.default_rng(0).permutation(20)
    shuffled = compute_folds([keys[i] for i in order], [signatures[i] for i in order], 4, seed=7)
    assert dict(zip([keys[i] for i in order], shuffled)) == folds
    assert compute_folds(keys, signatures, 4, seed=7) == [folds[k] for k in keys]


@pytest.mark.parametrize("n, k", [(12, 3), (13, 3), (7, 5), (20, 4)])
def test_folds_cover_every_pair_once_with_sizes_within_one(n: int, k: int) -> None:
    signatures = [(i % 3,) for i in range(n)]
    folds = compute_folds(_keys(n), signatures, k, seed=1)
    assert len(folds) == n and set(folds) == set(range(k))  # every pair in exactly one fold, every fold used
    sizes = Counter(folds).values()
    assert max(sizes) - min(sizes) <= 1


def test_each_fold_gets_its_share_of_every_class_presence() -> None:
    keys = _keys(12)
    signatures = [(1, 2) if i < 6 else (1,) for i in range(12)]  # 6 masks with class 2, 6 without
    for seed in range(5):
        folds = compute_folds(keys, signatures, 3, seed)
        for fold in range(3):
            with_class_2 = sum(1 for f, s in zip(folds, signatures) if f == fold and 2 in s)
            without = sum(1 for f, s in zip(folds, signatures) if f == fold and 2 not in s)
            assert (with_class_2, without) == (2, 2), f"seed {seed}, fold {fold}"


def test_fold_seed_changes_the_assignment() -> None:
    keys, signatures = _keys(30), [()] * 30
    assert compute_folds(keys, signatures, 3, seed=1) != compute_folds(keys, signatures, 3, seed=2)


@pytest.mark.parametrize("overrides, key", [
    (["dataset.folds=3", "dataset.fold=3"], "dataset.fold=3"),
    (["dataset.folds=1"], "dataset.folds=1"),
    (["dataset.fold=2"], "dataset.fold=2"),
])
def test_invalid_fold_settings_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(FlexsegError, match=key):
        compose(overrides)


def _dataset(root: Path, train: dict[str, int], valid: dict[str, int]) -> DatasetConfig:
    """Pairs `stem: class` (a 4x4 mask, class 0 with one pixel of `class`) in train/ and valid/."""
    for split, pairs in (("train", train), ("valid", valid)):
        for stem, cls in pairs.items():
            mask = np.zeros((4, 4, 3), np.uint8)
            mask[0, 0] = CLASSES[cls].color
            write_png(root / split / "images" / f"{stem}.png", np.full((4, 4, 3), 90, np.uint8))
            write_png(root / split / "masks" / f"{stem}.png", mask)
    return DatasetConfig(root=str(root), classes=CLASSES, folds=2)


def test_fold_splits_pool_train_and_valid_stratified_by_mask_classes(tmp_path: Path) -> None:
    train = {f"t{i}": 2 if i < 4 else 1 for i in range(6)}  # class b in 4 of 8 masks: 2 per fold
    cfg = _dataset(tmp_path, train, {"v0": 1, "v1": 1})
    opts = options_from_config(cfg, 3)[1]
    folds = [build_fold_splits(replace(cfg, fold=i), opts, workers=2) for i in range(2)]
    pooled = {*build_split(cfg, "train").images, *build_split(cfg, "valid").images}
    valids = [set(valid.images) for _, valid in folds]
    assert valids[0].isdisjoint(valids[1]) and valids[0] | valids[1] == pooled
    for (tr, valid), other in zip(folds, reversed(valids)):
        assert set(tr.images) == other and len(valid) == 4
        assert [Path(m).stem for m in valid.masks] == [Path(i).stem for i in valid.images]
        assert sum(1 for i in valid.images if Path(i).stem in {"t0", "t1", "t2", "t3"}) == 2


def test_a_stem_in_train_and_valid_is_two_pairs_unless_it_is_the_same_image(tmp_path: Path) -> None:
    cfg = _dataset(tmp_path, {"a": 1, "b": 1}, {"a": 2})
    write_png(tmp_path / "valid/images/a.png", np.full((4, 4, 3), 200, np.uint8))  # another image, same stem
    opts = options_from_config(cfg, 3)[1]
    train, valid = build_fold_splits(cfg, opts)
    assert sorted([*train.images, *valid.images]) == sorted(
        str(tmp_path / p) for p in ("train/images/a.png", "train/images/b.png", "valid/images/a.png"))
    write_png(tmp_path / "valid/images/a.png", np.full((4, 4, 3), 90, np.uint8))  # now the train image's copy
    with pytest.raises(FlexsegError, match=r"(?s)valid/images/a\.png.*train/images/a\.png.*same image"):
        build_fold_splits(cfg, opts)


def test_no_valid_split_pools_train_alone_and_too_few_pairs_fail(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cfg = _dataset(tmp_path, {"a": 1, "b": 2, "c": 1}, {})
    opts = options_from_config(cfg, 3)[1]
    train, valid = build_fold_splits(replace(cfg, folds=3, fold=1), opts)
    assert (len(train), len(valid)) == (2, 1)
    assert "fold 1 of 3: 2 train / 1 valid pairs (stratified by class presence)" in caplog.text
    with pytest.raises(FlexsegError, match="dataset.folds=4, but train \\+ valid hold only 3 pair"):
        build_fold_splits(replace(cfg, folds=4), opts)


def test_fold_splits_of_real_lung_tumor_data(shared_data: Path) -> None:
    cfg = compose(["dataset=lung_tumor", f"dataset.root={shared_data / 'lung_tumor_mini'}", "dataset.folds=3"])
    opts = options_from_config(cfg.dataset, 3)[1]
    pooled = {*build_split(cfg.dataset, "train").images, *build_split(cfg.dataset, "valid").images}
    valids = []
    for fold in range(3):
        train, valid = build_fold_splits(replace(cfg.dataset, fold=fold), opts, workers=2)
        assert set(train.images).isdisjoint(valid.images) and set(train.images) | set(valid.images) == pooled
        assert abs(len(valid) - len(pooled) / 3) < 1
        valids.append(set(valid.images))
    assert set().union(*valids) == pooled and sum(map(len, valids)) == len(pooled)
