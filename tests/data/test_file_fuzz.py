"""File fuzz: seeded random, truncated and odd image / mask files through the readers every mode uses, then
through stats / train / infer / tiled: each bad file is reported by name and `dataset.on_bad_file` decides
(error: stop listing them, exit 2; skip: go on, warning with their names); never a traceback."""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY, compose, run_cli
from fuzz_files import PALETTE, FuzzFile, png_header, random_files

from flexseg.context import RunContext
from flexseg.data.checks import inspect_file
from flexseg.data.discovery import DataProblemsError
from flexseg.data.mask_files import read_foreign, read_labels
from flexseg.data.readers import ImageOptions, MaskOptions, read_image
from flexseg.errors import FlexsegError
from flexseg.inference.image_io import open_image

SEED, COUNT = 23, 160


def _outcome(f: FuzzFile, read) -> str | None:  # type: ignore[no-untyped-def]
    """Pre-flight check, then `read(path)`; what went wrong, or None."""
    try:
        _, problem = inspect_file(f.path, 2**28)
        if problem is not None:
            if problem.path != str(f.path):
                return f"problem names {problem.path}"
            return "a good file was reported" if f.good else None
        read(f.path)
    except FlexsegError as err:
        if f.path.name not in str(err):
            return f"message does not name the file: {err}"
        return f"a good file was refused: {err}" if f.good else None
    except Exception as err:  # noqa: BLE001 - a crash is what the fuzz looks for
        return f"crash {type(err).__name__}: {err}"
    return "a bad file was read" if f.good is False else None


def _read_image(path: Path) -> None:
    image = read_image(path, ImageOptions(3), (32, 32))
    assert image.shape == (32, 32, 3) and image.dtype == np.float32
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    reader = open_image(path)  # what infer / tiled read (TIFFs by rows)
    try:
        rows = reader.read_pixels(0, reader.shape[0])
        assert rows.shape == reader.shape
    finally:
        reader.close()


def _read_mask(path: Path) -> None:
    opts = MaskOptions(PALETTE)
    labels, unmatched = read_labels(path, opts)
    assert labels.ndim == 2 and labels.dtype == np.uint8 and labels.max(initial=0) < len(PALETTE)
    assert 0 <= unmatched <= labels.size
    if unmatched:
        read_foreign(path, opts)


@pytest.mark.parametrize(("for_mask", "read"), [(False, _read_image), (True, _read_mask)], ids=["images", "masks"])
def test_random_files_are_read_or_reported_by_name(tmp_path: Path, for_mask: bool, read) -> None:  # type: ignore[no-untyped-def]
    files = random_files(tmp_path, random.Random(SEED + for_mask), COUNT, for_mask)
    failures = [f"{f.path.name} ({f.kind}): {problem}" for f in files if (problem := _outcome(f, read))]
    assert not failures, f"{len(failures)} of {COUNT} files:\n" + "\n".join(failures[:30])


def _write(path: Path, content: np.ndarray | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        cv2.imwrite(str(path), content)


def _mask(size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size, 3), np.uint8)
    mask[4 : size // 2, 4 : size // 2] = 255
    return mask


def _noise(seed: int, shape: tuple[int, ...] = (32, 32, 3), top: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, top, shape).astype(np.uint16 if top > 256 else np.uint8)


def _loop(folder: Path) -> None:
    """Two symbolic links pointing at each other, and a folder link that contains itself."""
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink("loop_b.png", folder / "loop_a.png")
    os.symlink("loop_a.png", folder / "loop_b.png")
    os.symlink(".", folder / "self")


# name of the bad file -> (its pair's stem, image, mask, mask suffix); each must be named in messages
PNG = cv2.imencode(".png", _noise(12))[1].tobytes()
BAD = {
    "random_bytes.png": ("random_bytes", bytes(random.Random(1).randrange(256) for _ in range(700)), _mask(), ".png"),
    "cut_image.png": ("cut_image", PNG[: len(PNG) // 2], _mask(), ".png"),
    "bomb.png": ("bomb", png_header(65535, 65535), _mask(), ".png"),
    "empty_mask.png": ("empty_mask", _noise(14), b"", ".png"),
    "cut_npz.npz": ("cut_npz", _noise(15), b"PK\x03\x04" + bytes(40), ".npz"),
    "off_palette.png": ("off_palette", _noise(13), np.full((32, 32, 3), (255, 0, 255), np.uint8), ".png"),
}
PREFLIGHT = {name for name in BAD if name != "off_palette.png"} | {"loop_a.png", "loop_b.png"}  # found before reading


def build_fuzz_dataset(root: Path) -> None:
    """train / valid / test of a black / white dataset: good pairs, odd but valid pairs (16-bit, RGBA,
    1x1 images), each file of `BAD` in train, and a symbolic link loop in train/images."""
    for split, count in (("train", 4), ("valid", 2), ("test", 2)):
        for i in range(count):
            _write(root / split / "images" / f"good{i}.png", _noise(i))
            _write(root / split / "masks" / f"good{i}.png", _mask())
    odd = {"deep16": (_noise(10, top=65536), _mask()), "rgba": (_noise(11, (32, 32, 4)), _mask()),
           "one_pixel": (np.full((1, 1, 3), 90, np.uint8), np.zeros((1, 1, 3), np.uint8))}
    for stem, (image, mask) in odd.items():
        _write(root / "train" / "images" / f"{stem}.png", image)
        _write(root / "train" / "masks" / f"{stem}.png", mask)
    for stem, image, mask, suffix in BAD.values():
        _write(root / "train" / "images" / f"{stem}.png", image)
        _write(root / "train" / "masks" / f"{stem}{suffix}", mask)
    _loop(root / "train" / "images")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fuzz dataset, a folder of infer / tiled inputs with bad files, and a 2-class `tiny.keras`."""
    import keras

    from flexseg.models.registry import build_model

    root = tmp_path_factory.mktemp("file_fuzz")
    build_fuzz_dataset(root)
    inputs = root / "inputs"
    _loop(inputs)
    for name in ("good0.png", "random_bytes.png", "cut_image.png", "bomb.png"):
        shutil.copy(root / "train" / "images" / name, inputs / name)
    keras.utils.set_random_seed(0)
    build_model(compose(_overrides(root, root, "train")).model).save(root / "tiny.keras")
    return root


def _overrides(root: Path, tmp_path: Path, mode: str, *more: str) -> list[str]:
    small = [o for o in TINY if o.startswith(("model.", "train.", "tiling."))]
    return ["dataset=lung_tumor", *small, f"mode={mode}", f"dataset.root={root}", f"ckpt={root / 'tiny.keras'}",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "callbacks=minimal", "train.epochs=1", *more]


def _named(text: str, names: set[str]) -> set[str]:
    """The names of `names` that `text` does not mention."""
    return {name for name in names if name not in text}


def test_stats_lists_every_bad_file_or_warns_with_their_names(data: Path, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from flexseg.modes import stats

    overrides = _overrides(data, tmp_path, "stats", "stats.splits=[train]")
    with pytest.raises(FlexsegError) as info:
        stats.run(compose(overrides), RunContext(tmp_path / "run", overrides))
    assert not _named(str(info.value), PREFLIGHT | {"off_palette.png"}), str(info.value)
    caplog.set_level(logging.WARNING)
    results = stats.run(compose([*overrides, "dataset.on_bad_file=skip"]), RunContext(tmp_path / "run", overrides))
    assert results["problems"] == len(PREFLIGHT) + 1 and results["train_pairs"] == 8  # 4 good, 3 odd, off_palette
    assert not _named(caplog.text, PREFLIGHT | {"off_palette.png"}), caplog.text


def test_train_stops_naming_every_bad_file_or_skips_them(data: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from omegaconf import OmegaConf

    from flexseg.modes import train

    def run(overrides: list[str]) -> dict[str, float]:
        cfg = compose(overrides)
        yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
        return train.run(cfg, RunContext(tmp_path / f"run{len(overrides)}", overrides, yaml))

    overrides = _overrides(data, tmp_path, "train")
    with pytest.raises(DataProblemsError) as info:
        run(overrides)
    assert not _named(str(info.value), PREFLIGHT), str(info.value)
    caplog.set_level(logging.WARNING)
    assert run([*overrides, "dataset.on_bad_file=skip"])["epochs"] == 1  # the good and odd pairs train
    assert not _named(caplog.text, PREFLIGHT | {"off_palette.png"}), caplog.text  # off_palette: when read


INPUTS_BAD = {"random_bytes.png", "cut_image.png", "bomb.png", "loop_a.png", "loop_b.png"}


@pytest.mark.parametrize("mode", ["infer", "tiled"])
def test_infer_and_tiled_stop_naming_every_bad_input_or_skip_them(data: Path, tmp_path: Path, mode: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from flexseg.modes import infer, tiled

    runner, key = (infer, "infer") if mode == "infer" else (tiled, "tiling")
    out = tmp_path / "out"
    overrides = _overrides(data, tmp_path, mode, f"{key}.images_dir={data / 'inputs'}", f"{key}.output_dir={out}")
    with pytest.raises(DataProblemsError) as info:
        runner.run(compose(overrides), RunContext(tmp_path / "run", overrides))
    assert not _named(str(info.value), INPUTS_BAD), str(info.value)
    assert not out.exists()
    caplog.set_level(logging.WARNING)
    results = runner.run(compose([*overrides, "dataset.on_bad_file=skip"]), RunContext(tmp_path / "run", overrides))
    assert results["images"] == 1.0 and [p.name for p in (out / "masks").iterdir()] == ["good0.png"]
    assert not _named(caplog.text, INPUTS_BAD), caplog.text


def test_cli_stats_exits_2_naming_the_bad_files_without_a_traceback(data: Path, tmp_path: Path) -> None:
    proc = run_cli([*_overrides(data, tmp_path, "stats", "stats.splits=[train]"), f"hydra.run.dir={tmp_path}/run"],
                   cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not _named(proc.stderr, PREFLIGHT | {"off_palette.png"}), proc.stderr[-3000:]


def test_cli_infer_skips_bad_inputs_warning_with_their_names(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli([*_overrides(data, tmp_path, "infer", f"infer.images_dir={data / 'inputs'}",
                                f"infer.output_dir={out}", "dataset.on_bad_file=skip"),
                    f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not _named(proc.stdout + proc.stderr, INPUTS_BAD)
    assert [p.name for p in (out / "masks").iterdir()] == ["good0.png"]
