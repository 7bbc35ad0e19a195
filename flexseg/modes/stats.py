"""`flexseg mode=stats`: decode every pair once; sizes, class frequencies, every problem; exit non-zero on errors
(with `dataset.on_bad_file=skip`: a warning naming each bad file instead, as the other modes leave them out).

Run it before training on a new dataset: it is the full check (mask colours included) that the
quick pre-training scan leaves out.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from flexseg import tracking
from flexseg.config.schemas import Config
from flexseg.config.choices import BadFilePolicy
from flexseg.data.discovery import FATAL, scan_split
from flexseg.data.readers import options_from_config
from flexseg.data.stats import SplitStats, compute_split_stats, plot_class_stats, stats_rows
from flexseg.context import RunContext
from flexseg.errors import FlexsegError
from flexseg.modes import common
from flexseg.reporting.tables import write_table

log = logging.getLogger(__name__)


def _log_table(all_stats: list[SplitStats]) -> None:
    for s in all_stats:
        sizes = ", ".join(f"{w}x{h} ({n})" for (h, w), n in s.sizes.most_common(3))
        log.info("%s: %d pairs; image sizes %s; unmatched mask pixels %d", s.split, s.pairs, sizes or "-",
                 s.unmatched_pixels)
        log.info("  %-16s %12s %10s %8s", "class", "pixels", "fraction", "images")
        for i, name in enumerate(s.class_names):
            log.info("  %-16s %12d %10.4f %8d", name, s.class_pixels[i], s.pixel_fraction[i], s.images_with_class[i])


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Check and describe the splits of `cfg.dataset`; raises FlexsegError when problems were found."""
    common.prepare_dataset(cfg.dataset)
    image_opts, mask_opts = options_from_config(cfg.dataset, cfg.model.image_channels)
    out = ctx.run_dir / "stats"
    out.mkdir(parents=True, exist_ok=True)
    scans = [scan_split(cfg.dataset, s.value) for s in cfg.stats.splits]
    with tqdm(total=sum(len(scan.split) for scan in scans), desc="stats", unit="pair") as bar:
        all_stats = [compute_split_stats(cfg.dataset, scan, image_opts, mask_opts, cfg.stats.workers, bar.update)
                     for scan in scans]
    _log_table(all_stats)
    rows = stats_rows(all_stats)
    stats_csv = write_table(out / "stats.csv", list(rows[0]), [list(r.values()) for r in rows])
    problems = [{"split": s.split, "path": p.path, "kind": p.kind, "message": p.message}
                for s in all_stats for p in s.problems]
    problems_csv = write_table(out / "problems.csv", ["split", "path", "kind", "message"],
                               [list(p.values()) for p in problems])
    chart = plot_class_stats([s for s in all_stats if s.pairs], mask_opts.palette, out / "class_stats.png") \
        if any(s.pairs for s in all_stats) else None
    results: dict[str, float] = {"problems": float(len(problems))}
    for s in all_stats:
        results[f"{s.split}_pairs"] = float(s.pairs)
        for name, frac in zip(s.class_names, s.pixel_fraction):
            results[f"{s.split}_fraction_{name}"] = float(frac)
    exp_id = common.open_tracking(cfg)
    with tracking.start_run(exp_id, run_name=tracking.run_name(cfg.tracking.experiment, "stats", ctx.overrides),
                            tags=common.run_tags(cfg, "stats", ctx.run_dir)):
        tracking.log_metrics({k: v for k, v in results.items() if v == v})
        for path in (stats_csv, problems_csv, chart):
            if path:
                tracking.log_artifact(path, "stats")
    for s in all_stats:
        if s.ignored:
            log.info("%s: ignored %d non-image file(s) (%s)", s.split, len(s.ignored),
                     ", ".join(sorted({Path(p).name for p in s.ignored})[:10]))
    log.info("stats written to %s", out)
    skip = cfg.dataset.on_bad_file == BadFilePolicy.skip and not any(p["kind"] in FATAL for p in problems)
    for p in problems if skip else []:  # the files training, infer and tiled leave out with this policy
        log.warning("skipping (dataset.on_bad_file=skip): [%s] %s: %s", p["kind"], p["path"], p["message"])
    if problems and not skip:
        listing = "\n".join(f"  - [{p['kind']}] {p['path']}: {p['message']}" for p in problems)
        raise FlexsegError(f"{len(problems)} problem(s) found in dataset '{cfg.dataset.name}' (also in {problems_csv}):\n"
                           f"{listing}\nFix or remove these files, or set dataset.on_bad_file=skip to leave them out.")
    return results
