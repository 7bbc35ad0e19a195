"""Dataset statistics and a full check: every pair decoded once, class frequencies, every problem found."""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from flexseg.config.schemas import DatasetConfig
from flexseg.data.checks import Problem
from flexseg.data.discovery import SplitScan
from flexseg.data.masks import unmatched_message
from flexseg.data.readers import ImageOptions, MaskOptions, read_image
from flexseg.data.mask_files import read_foreign, read_labels
from flexseg.errors import FlexsegError


@dataclass
class SplitStats:
    """What one split holds: pairs, image sizes, class frequencies, and every problem found."""

    split: str
    class_names: list[str]
    pairs: int = 0
    sizes: collections.Counter = field(default_factory=collections.Counter)
    class_pixels: np.ndarray | None = None  # (K,) pixel counts
    images_with_class: np.ndarray | None = None  # (K,) number of masks containing the class
    unmatched_pixels: int = 0
    problems: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def pixel_fraction(self) -> np.ndarray:
        total = self.class_pixels.sum()
        return self.class_pixels / total if total else np.full(len(self.class_names), np.nan)


def compute_split_stats(
    cfg: DatasetConfig, scan: SplitScan, image_opts: ImageOptions, mask_opts: MaskOptions,
    workers: int = 4, progress: Callable[[int], None] | None = None,
) -> SplitStats:
    """Fully decode every pair a `scan_split` found; never raises for data problems."""
    names = [c.name for c in cfg.classes]
    k = len(names)
    stats = SplitStats(scan.split.name, names, class_pixels=np.zeros(k, np.int64),
                       images_with_class=np.zeros(k, np.int64))
    stats.problems.extend(scan.problems)
    stats.ignored = scan.ignored

    def one(pair: tuple[str, str]) -> tuple[np.ndarray | None, int, Problem | None]:
        img, mask = pair
        try:
            read_image(img, image_opts)
            labels, unmatched = read_labels(mask, mask_opts)
        except FlexsegError as err:
            return None, 0, Problem(img, "undecodable", str(err))
        problem = None
        if unmatched > cfg.max_unmatched * labels.size:  # the message training would stop with
            problem = Problem(mask, "unmatched-colors", unmatched_message(
                unmatched, labels.size, mask_opts.color_tolerance, cfg.max_unmatched, read_foreign(mask, mask_opts)))
        return np.bincount(labels.ravel(), minlength=k)[:k], unmatched, problem

    with ThreadPoolExecutor(max_workers=workers) as pool:  # OpenCV decodes with the GIL released
        for (img, _), (counts, unmatched, problem) in zip(
            zip(scan.split.images, scan.split.masks), pool.map(one, zip(scan.split.images, scan.split.masks))
        ):
            if progress:
                progress(1)
            if problem:
                stats.problems.append(problem)
            if counts is None:
                continue
            stats.pairs += 1
            stats.sizes[scan.sizes[img]] += 1
            stats.class_pixels += counts
            stats.images_with_class += counts > 0
            stats.unmatched_pixels += unmatched
    return stats


def stats_rows(all_stats: list[SplitStats]) -> list[dict[str, object]]:
    """One row per split and class, for stats.csv and the console table."""
    rows = []
    for s in all_stats:
        for i, name in enumerate(s.class_names):
            rows.append({"split": s.split, "class": name, "pixels": int(s.class_pixels[i]),
                         "pixel_fraction": float(s.pixel_fraction[i]), "images_with_class": int(s.images_with_class[i]),
                         "pairs": s.pairs})
    return rows


def plot_class_stats(all_stats: list[SplitStats], colors: np.ndarray, path: Path) -> Path:
    """Bar charts per split: class pixel frequency (log scale) and number of images containing each class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(all_stats), 2, figsize=(11, 2.8 * len(all_stats)), squeeze=False)
    bar_colors = [tuple(c / 255 for c in col) for col in colors]
    for row, s in zip(axes, all_stats):
        x = np.arange(len(s.class_names))
        row[0].bar(x, np.where(s.pixel_fraction > 0, s.pixel_fraction, np.nan), color=bar_colors, edgecolor="black")
        row[0].set_yscale("log")
        row[0].set_title(f"{s.split}: pixel frequency ({s.pairs} pairs)")
        row[1].bar(x, s.images_with_class, color=bar_colors, edgecolor="black")
        row[1].set_title(f"{s.split}: images containing the class")
        for ax in row:
            ax.set_xticks(x, s.class_names, rotation=30, ha="right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
