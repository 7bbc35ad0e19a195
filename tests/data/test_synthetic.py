"""Tests of the embedded synthetic dataset: layout, mask colours, determinism and the cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from flexseg.config.schemas import SyntheticConfig
from flexseg.data.synthetic import MARKER, build_synthetic_dataset
from flexseg.errors import FlexsegError

COLORS = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
TINY = SyntheticConfig(seed=3, image_size=32, num_train=4, num_valid=2, num_test=2, num_large=1, large_size=96)


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)


def _pngs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return build_synthetic_dataset(tmp_path / "synthetic", TINY, COLORS)


def test_layout_counts_and_sizes(tiny: Path) -> None:
    expected = {"train": (4, 32), "valid": (2, 32), "test": (2, 32), "large": (1, 96)}
    for split, (count, size) in expected.items():
        images = sorted(p.name for p in (tiny / split / "images").glob("*.png"))
        masks = sorted(p.name for p in (tiny / split / "masks").glob("*.png"))
        assert len(images) == count and images == masks
        for name in images:
            image, mask = _read_rgb(tiny / split / "images" / name), _read_rgb(tiny / split / "masks" / name)
            assert image.shape == mask.shape == (size, size, 3)
            assert image.dtype == mask.dtype == np.uint8
    assert (tiny / "train" / "images" / "synth_0000.png").is_file()
    assert (tiny / "large" / "images" / "large_00.png").is_file()
    assert (tiny / MARKER).is_file()


def test_masks_use_only_class_colours(tiny: Path) -> None:
    allowed = {tuple(c) for c in COLORS}
    for path in tiny.glob("*/masks/*.png"):
        found = {tuple(int(v) for v in c) for c in np.unique(_read_rgb(path).reshape(-1, 3), axis=0)}
        assert found <= allowed, path


def test_every_class_appears_in_train(tmp_path: Path) -> None:
    spec = SyntheticConfig(seed=0, image_size=64, num_train=8, num_valid=1, num_test=1, num_large=0)
    root = build_synthetic_dataset(tmp_path / "synthetic", spec, COLORS)
    pixels = np.concatenate([_read_rgb(p).reshape(-1, 3) for p in (root / "train" / "masks").glob("*.png")])
    found = {tuple(int(v) for v in c) for c in np.unique(pixels, axis=0)}
    assert found == {tuple(c) for c in COLORS}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, tiny: Path) -> None:
    again = build_synthetic_dataset(tmp_path / "again", TINY, COLORS)
    other = SyntheticConfig(**{**vars(TINY), "seed": TINY.seed + 1})
    different = build_synthetic_dataset(tmp_path / "other", other, COLORS)
    assert _pngs(again) == _pngs(tiny)
    assert _pngs(different).keys() == _pngs(tiny).keys()
    assert all(_pngs(different)[k] != v for k, v in _pngs(tiny).items())


def test_cache_hit_leaves_files_untouched(tiny: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}
    assert build_synthetic_dataset(tiny, TINY, COLORS) == tiny
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == before


def test_marker_mismatch_regenerates_without_leftovers(tiny: Path) -> None:
    old = _pngs(tiny)
    other = SyntheticConfig(**{**vars(TINY), "seed": 99, "num_train": 3})
    build_synthetic_dataset(tiny, other, COLORS)
    assert len(list((tiny / "train" / "images").glob("*.png"))) == 3
    assert _pngs(tiny) != old
    assert '"seed": 99' in (tiny / MARKER).read_text()
    assert sorted(p.name for p in tiny.parent.iterdir()) == ["synthetic"]


def test_refuses_to_overwrite_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    with pytest.raises(FlexsegError, match="will not overwrite"):
        build_synthetic_dataset(tmp_path / "mine", TINY, COLORS)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "user data"
    with pytest.raises(FlexsegError, match="4 classes"):
        build_synthetic_dataset(tmp_path / "new", TINY, COLORS[:3])
