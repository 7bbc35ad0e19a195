"""Schema of the `callbacks` config group (`conf/callbacks/*.yaml`): what a training run does at
each epoch end. No TensorFlow import here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class CallbacksConfig:
    """Checkpoints, early stopping, the learning-rate reducer, logs, plots and epoch pictures."""

    # Decides the best checkpoint, early stopping and ReduceLROnPlateau (val_loss, val_dice, ...).
    monitor: str = "val_loss"
    checkpoint: bool = True  # checkpoints/best.keras when `monitor` improves
    last_checkpoint: bool = True  # checkpoints/last.keras + state.json (train.resume needs them)
    # How often last.keras + state.json are committed: N (every N-th epoch) or a time like 300s / 10m
    # (the first epoch end after that much time). The last epoch is always committed; a killed run
    # resumes losing at most this interval. Written in the background, without stopping training.
    last_every: str = "1"
    early_stopping: bool = True
    patience: int = 10
    min_delta: float = 0.0
    reduce_lr: bool = True
    reducer_factor: float = 0.5
    reducer_patience: int = 4
    reducer_cooldown: int = 0
    min_lr: float = 0.0
    epoch_change_infer: bool = True
    num_infer_images: int = 4
    # Sliding-window inference of one large image after every epoch (tiling.* settings).
    epoch_change_tiled: bool = True
    # None: the first image of <dataset.root>/large/images (skipped when that folder is missing).
    tiled_image: Optional[str] = None
    tiled_every: int = 1  # every N-th epoch (and the last); each run costs a full sliding-window prediction
    # Epoch pictures (infer + tiled) take at most this share of the training time: an epoch's pictures are
    # skipped while they are over it (the last epoch always gets them). None: every epoch.
    pictures_share: Optional[float] = 0.02
    csv_logs: bool = True  # train_losses.csv, train_metrics.csv
    plots: bool = True  # train_losses.png, train_metrics.png
    mlflow: bool = True  # per-epoch metrics into the MLflow run
    log_lr: bool = True  # the learning rate as metric `lr`
