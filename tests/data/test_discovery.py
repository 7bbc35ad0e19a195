"""Pairing images and masks by stem, and the errors a user sees for broken layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from flexseg.config import ClassConfig, DatasetConfig
from flexseg.data.discovery import build_split, list_image_files
from flexseg.errors import FlexsegError


def _write(path: Path, value: int = 0, ext: str = ".png") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = path.with_suffix(ext)
    cv2.imwrite(str(out), np.full((8, 8, 3), value, np.uint8))
    return out


def _cfg(root: Path, **kw: str) -> DatasetConfig:
    classes = [ClassConfig("bg", [0, 0, 0]), ClassConfig("fg", [255, 255, 255])]
    return DatasetConfig(root=str(root), classes=classes, **kw)


def test_pairs_by_stem_not_sort_order(tmp_path: Path) -> None:
    # image names sort differently from mask names once extensions differ: b.jpg < c.bmp, masks all .png
    for stem, ext in (("c", ".bmp"), ("a", ".png"), ("b", ".jpg")):
        _write(tmp_path / "train/images" / stem, ext=ext)
        _write(tmp_path / "train/masks" / stem)
    (tmp_path / "train/images/.DS_Store").write_text("junk")
    (tmp_path / "train/masks/notes.txt").write_text("junk")
    split = build_split(_cfg(tmp_path), "train")
    assert [Path(p).stem for p in split.images] == [Path(p).stem for p in split.masks] == ["a", "b", "c"]


def test_unpaired_files_are_listed(tmp_path: Path) -> None:
    _write(tmp_path / "train/images/a")
    _write(tmp_path / "train/images/lonely")
    _write(tmp_path / "train/masks/a")
    _write(tmp_path / "train/masks/orphan")
    with pytest.raises(FlexsegError, match=r"lonely\.png.*orphan\.png"):
        build_split(_cfg(tmp_path), "train")


def test_missing_split_folder_names_key(tmp_path: Path) -> None:
    with pytest.raises(FlexsegError, match=r"dataset\.valid_images: folder .*valid/images' does not exist"):
        build_split(_cfg(tmp_path), "valid")


def test_same_stem_twice_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "train/images/a", ext=".png")
    _write(tmp_path / "train/images/a", ext=".jpg")
    _write(tmp_path / "train/masks/a")
    with pytest.raises(FlexsegError, match=r"share the stem 'a'"):
        build_split(_cfg(tmp_path), "train")


def test_glob_split_paths(tmp_path: Path) -> None:
    for cls in ("baso", "eosi"):
        _write(tmp_path / f"train/{cls}/images/{cls}_1")
        _write(tmp_path / f"train/{cls}/masks/{cls}_1")
    split = build_split(_cfg(tmp_path, train_images="train/*/images", train_masks="train/*/masks"), "train")
    assert len(split) == 2
    with pytest.raises(FlexsegError, match=r"matches no folder"):
        build_split(_cfg(tmp_path, train_images="nope/*/images"), "train")


def test_empty_folder_for_inference(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlexsegError, match=r"infer\.images_dir: folder .* holds no images"):
        list_image_files(tmp_path / "empty", "infer.images_dir")
