"""Pairing by stem/folder (never sort order), and one clear message listing every bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from bad_data import build_bad_dataset, good_pair, write_png

from flexseg.config.schemas import ClassConfig, DatasetConfig
from flexseg.data.checks import inspect_file
from flexseg.data.discovery import DataProblemsError, build_split, check_inputs, list_image_files, scan_split
from flexseg.errors import FlexsegError


def _cfg(root: Path, **kw: object) -> DatasetConfig:
    classes = [ClassConfig("bg", [0, 0, 0]), ClassConfig("fg", [255, 0, 0])]
    return DatasetConfig(root=str(root), classes=classes, **kw)


def test_pairs_by_stem_not_sort_order(tmp_path: Path) -> None:
    # File names sort differently in the two folders: images a.bmp < a.m.bmp < b.bmp, but masks
    # a.m.png < a.png < b.png. Each pair carries its own gray level, so a mispairing shows in the pixels.
    levels = {"a": 40, "a.m": 120, "b": 200}
    for stem, level in levels.items():
        write_png(tmp_path / "train/images" / f"{stem}.bmp", np.full((8, 8, 3), level, np.uint8))
        write_png(tmp_path / "train/masks" / f"{stem}.png", np.full((8, 8, 3), level, np.uint8))
    assert sorted(p.name for p in (tmp_path / "train/masks").iterdir())[:2] == ["a.m.png", "a.png"]
    split = build_split(_cfg(tmp_path), "train")
    assert sorted(Path(p).stem for p in split.images) == sorted(levels)
    for image, mask in zip(split.images, split.masks):
        assert Path(image).stem == Path(mask).stem
        assert cv2.imread(image)[0, 0, 0] == cv2.imread(mask)[0, 0, 0] == levels[Path(image).stem]


def test_every_bad_input_is_listed_with_its_file(tmp_path: Path) -> None:
    expected = build_bad_dataset(tmp_path)
    with pytest.raises(DataProblemsError) as info:
        build_split(_cfg(tmp_path), "train")
    message = str(info.value)
    for case, name in expected.items():
        assert name in message, f"{case}: {name} not named in\n{message}"
    kinds = {p.kind for p in info.value.problems}
    assert {"unpaired-image", "unpaired-mask", "empty-file", "undecodable", "truncated", "size-mismatch",
            "duplicate-stem", "too-large"} <= kinds
    truncated = {Path(p.path).name for p in info.value.problems if p.kind == "truncated"}
    assert truncated == {"truncated_png.png", "truncated_jpg.jpg"}
    assert "on_bad_file=skip" in message
    assert ".DS_Store" not in message and "notes.txt" not in message  # ignored, not errors


def test_skip_policy_keeps_the_good_pairs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    build_bad_dataset(tmp_path)
    split = build_split(_cfg(tmp_path, on_bad_file="skip"), "train")
    assert sorted(Path(p).stem for p in split.images) == ["good_0", "good_1", "good_2", "purple"]
    assert "zero_bytes.png" in caplog.text and "ignored 3 non-image file(s)" in caplog.text


def test_missing_split_folder_names_key(tmp_path: Path) -> None:
    with pytest.raises(FlexsegError, match=r"valid/images: folder does not exist \(dataset\.valid_images\)"):
        build_split(_cfg(tmp_path, on_bad_file="skip"), "valid")


def test_empty_split_folder(tmp_path: Path) -> None:
    (tmp_path / "test/images").mkdir(parents=True)
    (tmp_path / "test/masks").mkdir(parents=True)
    with pytest.raises(FlexsegError, match=r"the test split has no image/mask pairs"):
        build_split(_cfg(tmp_path), "test")


def test_per_class_subfolders_pair_by_folder_and_stem(tmp_path: Path) -> None:
    for cls in ("baso", "eosi"):  # the same stem in two class folders is two different pairs
        good_pair(tmp_path / "train" / cls, "", "001")
    split = build_split(_cfg(tmp_path), "train")  # layout detected: train/*/images
    assert [Path(p).parent.parent.name for p in split.images] == ["baso", "eosi"]
    assert [Path(p).parent.parent.name for p in split.masks] == ["baso", "eosi"]
    explicit = _cfg(tmp_path, train_images="train/*/images", train_masks="train/*/masks")
    assert build_split(explicit, "train") == split


def test_glob_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(FlexsegError, match=r"the glob matches no folder \(dataset\.train_images\)"):
        build_split(_cfg(tmp_path, train_images="nope/*/images"), "train")


def test_scan_never_raises_and_counts_sizes(tmp_path: Path) -> None:
    good_pair(tmp_path, "train", "x", size=24)
    scan = scan_split(_cfg(tmp_path), "train")
    assert not scan.problems and list(scan.sizes.values()) == [(24, 24)]


def test_empty_folder_for_inference(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlexsegError, match=r"infer\.images_dir: folder .* holds no images"):
        list_image_files(tmp_path / "empty", "infer.images_dir")


def test_list_image_files_takes_tiffs_and_rejects_shared_stems(tmp_path: Path) -> None:
    for name in ("a.png", "b.tif", "c.TIFF", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_image_files(tmp_path, "tiling.images_dir")] == ["a.png", "b.tif", "c.TIFF"]
    (tmp_path / "a.tif").write_bytes(b"")
    with pytest.raises(FlexsegError, match="tiling.images_dir: two files share the stem 'a'"):
        list_image_files(tmp_path, "tiling.images_dir")
    with pytest.raises(FlexsegError, match="tiling.masks_dir.*does not exist"):
        list_image_files(tmp_path / "nope", "tiling.masks_dir", allow_empty=True)
    (tmp_path / "empty").mkdir()
    assert list_image_files(tmp_path / "empty", "tiling.masks_dir", allow_empty=True) == []


def test_check_inputs_lists_bad_inputs_or_skips_them_with_their_masks(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11: infer/tiled inputs get training's pre-flight check; TIFFs (read by rows) have no size limit."""
    import tifffile

    images, masks = tmp_path / "images", tmp_path / "masks"
    for stem in ("a", "b", "c"):
        write_png(images / f"{stem}.png", np.zeros((16, 16, 3), np.uint8))
    write_png(masks / "b.png", np.zeros((16, 16, 3), np.uint8))
    (masks / "b.png").write_bytes((masks / "b.png").read_bytes()[:-12])  # no IEND: the mask of b is cut
    (images / "c.png").write_bytes(b"")
    tifffile.imwrite(images / "big.tif", np.zeros((64, 64, 3), np.uint8))
    files = list_image_files(images, "tiling.images_dir")
    cfg = _cfg(tmp_path, max_pixels=1000)
    with pytest.raises(DataProblemsError) as info:
        check_inputs(files, "tiling.images_dir", cfg, {"b": masks / "b.png"}, lazy_tiff=True)
    assert [(Path(p.path).name, p.kind) for p in info.value.problems] == [("b.png", "truncated"), ("c.png", "empty-file")]
    assert str(info.value).startswith(f"tiling.images_dir ('{images}') has 2 problem(s)")
    caplog.set_level(logging.WARNING)
    skip = _cfg(tmp_path, max_pixels=1000, on_bad_file="skip")
    assert [p.name for p in check_inputs(files, "tiling.images_dir", skip, {"b": masks / "b.png"}, lazy_tiff=True)] == [
        "a.png", "big.tif"]
    assert "masks/b.png" in caplog.text and "c.png" in caplog.text
    # infer decodes TIFFs whole: there dataset.max_pixels applies to them as to every image
    assert [p.name for p in check_inputs(files, "infer.images_dir", skip)] == ["a.png", "b.png"]
    data = (images / "big.tif").read_bytes()
    (images / "big.tif").write_bytes(data[: len(data) // 2])
    assert inspect_file(images / "big.tif", 10**6)[1].kind == "truncated"
