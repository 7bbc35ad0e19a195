"""Evaluation report files: per-image score table, confusion matrix CSV, gallery of the worst images.

Pure functions and a small collector: numpy in, files out (temp file + rename); no TensorFlow.
"""

from __future__ import annotations

import csv
import heapq
import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from flexseg import storage
from flexseg.reporting import viz
from flexseg.reporting.plots import fit_for_display


def _fmt(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_table(path: Path, header: Sequence[str] | None, rows: Sequence[Sequence[object]]) -> Path:
    """A CSV (header row unless None) via temp file + rename; floats with 6 significant digits, NaN as `nan`."""
    with storage.atomic_write(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        if header is not None:
            writer.writerow(header)
        writer.writerows([_fmt(v) for v in row] for row in rows)
    return path


def write_confusion_csv(path: Path, confusion: np.ndarray, class_names: Sequence[str]) -> Path:
    """(K, K) pixel counts with class-name headers: rows truth, columns prediction."""
    rows = [[name, *(int(v) for v in confusion[i])] for i, name in enumerate(class_names)]
    return write_table(path, ["truth \\ prediction", *class_names], rows)



class WorstImages:
    """Keeps the `k` images with the lowest score (NaN scores, i.e. nothing to find, never count).

    Args:
        k: How many to keep.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int, str, np.ndarray, np.ndarray, np.ndarray]] = []
        self._count = 0

    def offer(self, score: float, name: str, image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> None:
        """Consider one image: (H, W, 3) uint8 RGB, (H, W, 3) uint8 colour masks."""
        if self.k < 1 or math.isnan(score):
            return
        self._count += 1
        item = (-score, self._count, name, image, truth, pred)  # max-heap on score via negation
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        elif -score > self._heap[0][0]:
            heapq.heapreplace(self._heap, item)

    def __len__(self) -> int:
        return len(self._heap)

    def build_gallery(self) -> np.ndarray:
        """image | truth | prediction rows, worst first, each image captioned with name and score.

        Returns:
            RGB uint8 grid (see `viz.build_grid`).
        """
        rows = []
        for neg, _, name, image, truth, pred in sorted(self._heap, key=lambda it: (-it[0], it[1])):
            captioned = fit_for_display(image).copy()
            truth, pred = fit_for_display(truth, nearest=True), fit_for_display(pred, nearest=True)
            for line, text in enumerate((name, f"fg dice {-neg:.3f}")):  # two lines: fits a 160 px panel
                y = 14 + 15 * line
                cv2.putText(captioned, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(captioned, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            rows.append([captioned, truth, pred])
        return viz.build_grid(rows, ["image", "truth", "prediction"])
