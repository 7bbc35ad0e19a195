"""What a mode runner gets from the CLI besides the config: where to write, and how it was called."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from flexseg.sweep.job import SweepJob


@dataclass
class RunContext:
    """Hydra's side of one `flexseg` call, handed to every `run(cfg, ctx)`.

    Attributes:
        run_dir: This call's output folder (Hydra's run dir).
        overrides: The command-line overrides of this call (`model.num_layers=3`, ...).
        config_yaml: The resolved config as YAML, as written to `<run_dir>/config.yaml`.
        sweep: The sweep job this call is (`flexseg -m`), or None for a single run.
    """

    run_dir: Path
    overrides: list[str] = field(default_factory=list)
    config_yaml: str = ""
    sweep: Optional[SweepJob] = None
