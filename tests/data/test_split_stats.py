"""`mode=stats` decodes masks as training does: blends of two class colours are not foreign."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from bad_data import EDGE_PALETTE, antialiased_mask, write_png

from flexseg.config.schemas import ClassConfig, DatasetConfig
from flexseg.data.discovery import scan_split
from flexseg.data.readers import options_from_config
from flexseg.data.stats import compute_split_stats


def test_stats_count_blends_as_their_class_and_name_only_foreign_colours(tmp_path: Path) -> None:
    mask, truth = antialiased_mask()
    foreign = mask.copy()
    foreign[10:20, 40:60] = foreign[60:70, 70:100] = (255, 0, 255)
    for stem, rgb in (("edges", mask), ("foreign", foreign)):
        write_png(tmp_path / "train" / "images" / f"{stem}.png", np.zeros((100, 100, 3), np.uint8))
        write_png(tmp_path / "train" / "masks" / f"{stem}.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    classes = [ClassConfig(name, list(map(int, c))) for name, c in zip(("bg", "red", "green"), EDGE_PALETTE)]
    cfg = DatasetConfig(root=str(tmp_path), classes=classes)
    stats = compute_split_stats(cfg, scan_split(cfg, "train"), *options_from_config(cfg, 3), workers=1)
    assert stats.unmatched_pixels == 500  # the magenta patches only, none of the 300 edge pixels per mask
    assert [(Path(p.path).name, p.kind) for p in stats.problems] == [("foreign.png", "unmatched-colors")]
    assert "(255, 0, 255) x 500" in stats.problems[0].message and "dataset.max_unmatched" in stats.problems[0].message
    # the magenta pixels take their nearest class, red: 300 of them lie in the green band
    np.testing.assert_array_equal(stats.class_pixels, 2 * np.bincount(truth.ravel()) + [0, 300, -300])
