"""Pictures for reports: training curves and a confusion-matrix heatmap (matplotlib, no pyplot),
and resizing of image panels for display.

Figures are built with `matplotlib.figure.Figure` directly (no global pyplot state, no GUI
backend) and written via temp file + rename.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from flexseg import storage


def fit_for_display(image: np.ndarray, min_side: int = 160, max_side: int = 1024, nearest: bool = False) -> np.ndarray:
    """Resize an (H, W, 3) panel so its longer side lies in [min_side, max_side] (aspect kept).

    Args:
        image: RGB uint8 panel.
        min_side, max_side: Bounds for the longer side.
        nearest: Nearest-neighbour resizing (colour masks); else area (shrink) / linear (enlarge).
    """
    longest = max(image.shape[:2])
    scale = min_side / longest if longest < min_side else min(1.0, max_side / longest)
    if scale == 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    smooth = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if nearest else smooth)


def _save(fig: Figure, path: Path) -> Path:
    with storage.atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def plot_curves(
    history: Sequence[dict[str, float]], panels: Sequence[tuple[str, Sequence[str]]], path: Path,
    log_scale: Sequence[str] = (),
) -> Path:
    """One panel per entry of `panels`: each listed key of the history against the epoch.

    Args:
        history: One dict per epoch with an `epoch` key (1-based) and metric values.
        panels: (title, keys) pairs; keys missing from the history are skipped, empty panels dropped.
        path: PNG file to write.
        log_scale: Titles of panels drawn with a logarithmic y axis (e.g. the learning rate).

    Returns:
        `path`.
    """
    panels = [(t, [k for k in keys if any(k in r for r in history)]) for t, keys in panels]
    panels = [(t, keys) for t, keys in panels if keys]
    cols = min(len(panels), 3) or 1
    rows = max(math.ceil(len(panels) / cols), 1)
    # Fixed margins instead of tight_layout, which draws the figure once more to measure its texts.
    fig = Figure(figsize=(5 * cols, 3.6 * rows))
    fig.subplots_adjust(left=0.6 / (5 * cols), right=1 - 0.15 / (5 * cols), bottom=0.5 / (3.6 * rows),
                        top=1 - 0.35 / (3.6 * rows), wspace=0.25, hspace=0.45)
    epochs = [r["epoch"] for r in history]
    for i, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for key in keys:
            values = [r.get(key, np.nan) for r in history]
            ax.plot(epochs, values, marker="o", markersize=3, linestyle="--" if key.startswith("val_") else "-",
                    label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if title in log_scale:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Heatmap of a confusion matrix, rows normalised to truth fractions, counts annotated.

    Args:
        confusion: (K, K) counts, rows truth, columns prediction.
        class_names: K names.
        path: PNG file to write.
    """
    counts = np.asarray(confusion, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    k = len(class_names)
    size = max(4.0, 0.9 * k + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the truth row")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    for r in range(k):
        for c in range(k):
            colour = "white" if fractions[r, c] > 0.5 else "black"
            ax.text(c, r, f"{fractions[r, c]:.2f}\n{int(counts[r, c])}", ha="center", va="center", fontsize=7,
                    color=colour)
    ax.set_title("confusion matrix (pixels)")
    fig.tight_layout()
    return _save(fig, path)
