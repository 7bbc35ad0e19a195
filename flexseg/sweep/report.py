"""A sweep's summary: the best job, cross-validation statistics, the leaderboard CSV and its pictures.

Optuna's own matplotlib plots (optimisation history, parameter importances, parallel coordinates)
are drawn for Optuna sweeps; every sweep gets the leaderboard and an objective-per-job chart.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from flexseg.reporting.plots import _save
from flexseg.reporting.tables import write_table

log = logging.getLogger(__name__)
STATE_COLORS = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange", "FAIL": "tab:red"}


def pick_best(rows: Sequence[dict[str, Any]], maximize: bool) -> Optional[dict[str, Any]]:
    """The COMPLETE row with the best finite objective, or None."""
    done = [r for r in rows if r["state"] == "COMPLETE" and math.isfinite(r.get("objective", math.nan))]
    if not done:
        return None
    return (max if maximize else min)(done, key=lambda r: r["objective"])


def cv_metrics(children: Sequence[dict[str, Any]]) -> dict[str, float]:
    """`cv_mean_*` / `cv_std_*` over the folds of the objective and every `best_val_dice*` metric.

    Args:
        children: The finished fold runs (`flexseg.tracking.sweeps.sweep_runs` dicts).
    """
    keys = sorted({k for c in children for k in c["metrics"] if k == "objective" or k.startswith("best_val_dice")})
    out: dict[str, float] = {}
    for key in keys:
        values = np.array([c["metrics"][key] for c in children if key in c["metrics"]], dtype=float)
        values = values[np.isfinite(values)]
        if len(values):
            name = key.removeprefix("best_")
            out[f"cv_mean_{name}"] = float(values.mean())
            out[f"cv_std_{name}"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def summary_files(rows: Sequence[dict[str, Any]], varying: Sequence[str], metric: str, direction: str,
                  out_dir: Path, study: Any = None) -> list[Path]:
    """Write `leaderboard.csv` (best first), `objective_by_job.png` and, for a study, Optuna's plots."""
    maximize = direction == "maximize"

    def rank(r: dict[str, Any]) -> tuple[int, float]:
        v = r.get("objective", math.nan)
        ok = r["state"] == "COMPLETE" and math.isfinite(v)
        return (0 if ok else 1, -v if ok and maximize else (v if ok else 0.0))

    ordered = sorted(rows, key=rank)
    header = ["job", "state", metric, *varying, "seconds", "run_id", "error"]
    table = [[r["job"], r["state"], r.get("objective", math.nan), *(r.get(k, "") for k in varying),
              r.get("seconds", math.nan), r.get("run_id", ""), r.get("error", "")] for r in ordered]
    files = [write_table(out_dir / "leaderboard.csv", header, table), _plot_jobs(rows, metric, out_dir)]
    if study is not None:
        files += _optuna_plots(study, out_dir)
    return files


def _plot_jobs(rows: Sequence[dict[str, Any]], metric: str, out_dir: Path) -> Path:
    fig = Figure(figsize=(max(4.0, 0.5 * len(rows) + 2), 3.2))
    ax = fig.add_subplot()
    jobs = [r["job"] for r in rows]
    values = [r.get("objective", math.nan) if math.isfinite(r.get("objective", math.nan)) else 0.0 for r in rows]
    ax.bar(range(len(jobs)), values, color=[STATE_COLORS.get(r["state"], "gray") for r in rows])
    ax.set_xticks(range(len(jobs)), [str(j) for j in jobs])
    ax.set_xlabel("job (blue complete, orange pruned, red failed)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per sweep job")
    fig.tight_layout()
    return _save(fig, out_dir / "objective_by_job.png")


def _optuna_plots(study: Any, out_dir: Path) -> list[Path]:
    """Optuna's matplotlib plots of the study; a plot Optuna cannot draw yet (too few trials) is skipped."""
    import optuna.visualization.matplotlib as ovm

    files = []
    for name, draw in (("optimization_history", ovm.plot_optimization_history),
                       ("param_importances", ovm.plot_param_importances),
                       ("parallel_coordinate", ovm.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks these plots experimental
                ax = draw(study)
            fig = (ax[0] if isinstance(ax, np.ndarray) else ax).get_figure()
            fig.set_size_inches(8, 5)
            path = out_dir / f"{name}.png"
            fig.savefig(path, dpi=90, bbox_inches="tight")
            import matplotlib.pyplot as plt

            plt.close(fig)
            files.append(path)
        except Exception as err:  # e.g. importances need two completed trials with varying params
            log.info("sweep plot %s skipped: %s", name, str(err).splitlines()[0] if str(err) else type(err).__name__)
    return files
