"""`flexseg mode=sync`: upload what training runs spooled while their tracking server was unreachable.

The spools (`<run_dir>/mlflow_spool/`) are looked for under `sync.path` (a run dir, or a folder of run
dirs), else under outputs/ and multirun/ of the current directory. Each record goes to the run and the
store it was written for (the `tracking.uri` of that training, whatever this call's is), in order; a
second sync uploads nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flexseg import tracking
from flexseg.config.schemas import Config
from flexseg.context import RunContext
from flexseg.errors import FlexsegError

log = logging.getLogger(__name__)


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Upload every pending spool; returns how many values went up (`uploaded`) to how many runs (`runs`).

    Raises:
        FlexsegError: when `sync.path` does not exist, or records are left (a server that does not answer).
    """
    if cfg.sync.path:
        root = Path(cfg.sync.path)
        if not root.exists():
            raise FlexsegError(f"sync.path={root} does not exist; give a run dir or a folder of run dirs, or leave "
                               "sync.path unset for every spool under outputs/ and multirun/.")
        folders, where = tracking.find_spools([root]), str(root)
    else:
        folders, where = tracking.find_local_spools(Path.cwd()), "outputs/ and multirun/"
    if not folders:
        log.info("nothing to upload: no spooled MLflow records under %s", where)
        return {"uploaded": 0.0, "runs": 0.0}
    answers: dict[str, str | None] = {}  # each server probed once
    reports = [tracking.upload_spool(folder, answers) for folder in folders]
    for report in reports:
        log.info("%s", report.describe())
    left = [r for r in reports if r.left]
    if left:
        reasons = "; ".join(sorted({r.reason for r in left}))
        raise FlexsegError(
            f"{sum(r.left for r in left)} spooled MLflow records of {len(left)} run dir(s) are not uploaded ({reasons}). "
            "Start the tracking server (`make server`) and run `flexseg mode=sync` again; nothing is uploaded twice."
        )
    runs = {run for r in reports for run in r.runs}
    return {"uploaded": float(sum(sum(r.counts.values()) for r in reports)), "runs": float(len(runs))}
