"""The tiny synthetic dataset with a random-weight checkpoint of the TINY model, for eval / infer / tiled tests."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY, compose


def build_model_data(root: Path) -> Path:
    """`root/synthetic` (the TINY synthetic dataset) and `root/tiny.keras`; returns `root`."""
    import keras

    from flexseg.models.registry import build_model
    from flexseg.modes import common

    cfg = compose([*TINY, f"dataset.root={root}/synthetic"])
    common.prepare_dataset(cfg.dataset)
    keras.utils.set_random_seed(0)
    build_model(cfg.model).save(root / "tiny.keras")
    return root


def mode_overrides(data: Path, tmp_path: Path, mode: str, *more: str) -> list[str]:
    """Overrides of `mode` on `build_model_data(data)` with a store in `tmp_path`."""
    return [*TINY, f"mode={mode}", f"dataset.root={data}/synthetic", f"ckpt={data / 'tiny.keras'}",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", *more]
