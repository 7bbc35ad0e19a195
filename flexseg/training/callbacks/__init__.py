"""Keras callbacks of a training run: checkpoints, the resumable epoch record, CSV/plots/MLflow,
epoch-change inference (model-size images and one large tiled image)."""

from flexseg.training.callbacks.checkpoint import BestCheckpoint, monitor_mode, save_model_atomic
from flexseg.training.callbacks.inference import EpochInference, EpochTiledInference, PictureBudget
from flexseg.training.callbacks.publish import CsvLogger, CurvePlotter, MlflowLogger
from flexseg.training.callbacks.state import (
    LAST_CHECKPOINT,
    STATE_FILE,
    EpochRecorder,
    TrainingState,
    read_state,
    write_state,
)

__all__ = [
    "BestCheckpoint", "CsvLogger", "CurvePlotter", "EpochInference", "EpochRecorder", "EpochTiledInference",
    "LAST_CHECKPOINT", "MlflowLogger", "PictureBudget", "STATE_FILE", "TrainingState", "monitor_mode", "read_state",
    "save_model_atomic", "write_state",
]
