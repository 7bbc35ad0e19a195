"""`flexseg mode=export`: a checkpoint -> TensorFlow SavedModel + MLflow model + model card.

Written beside the checkpoint, `<training run dir>/export/` (`saved_model/`, `mlflow_model/`,
`model_card.json`, `README.md`; else this call's run dir), and into the checkpoint's training run:
`runs:/<run_id>/model` is the MLflow model (`mlflow models serve -m runs:/<run_id>/model
--env-manager local`), `export/` the SavedModel and card. `tracking.register_as=NAME` adds a version
of the registered model NAME, which `ckpt=models:/NAME/<version>` then loads. See `flexseg.export`.
"""

from __future__ import annotations

from flexseg.config.schemas import Config
from flexseg.context import RunContext
from flexseg.modes import common


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Export `cfg.ckpt` (default: the newest finished training run of the experiment)."""
    return common.export_checkpoint(cfg, ctx)
