"""Loading a checkpoint file as a Keras model, with one short message for every file that is not one.

`ckpt` takes a `.keras` file (Keras 3's zip of `config.json` + weights, as flexseg writes them),
`runs:/<run_id>` or `latest`. Anything else (an image, a weights-only `.h5`, a SavedModel folder, an
empty or truncated file) is recognised from its first bytes and named, instead of Keras's own error
(a "File not found" for a file that exists, or a paragraph about TFSMLayer for a PNG).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from flexseg.errors import FlexsegError
from flexseg.models import layers as _custom_layers  # noqa: F401  registers the zoo's layers for safe_mode loading

ACCEPTS = ("ckpt takes a .keras file written by flexseg (checkpoints/best.keras of a training run), "
           "models:/NAME/VERSION (a registered mode=export), runs:/<run_id> or latest")
# Leading bytes of file types people pass by mistake -> what to call them.
MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"\x89HDF", "an HDF5 file (a Keras 2 .h5 model or weights; re-save it with Keras 3 as .keras)"),
    (b"PK\x03\x04", "a zip archive"),
)


def describe_file(path: Path) -> str | None:
    """What `path` is when it cannot be a `.keras` model, else None.

    Returns:
        A phrase such as "a PNG image" or "an empty file", or None for a zip holding `config.json`.
    """
    if path.is_dir():
        saved = (path / "saved_model.pb").is_file()
        return "a TensorFlow SavedModel folder (export it from Keras 3 as .keras)" if saved else "a folder"
    with path.open("rb") as fh:
        head = fh.read(8)
    if not head:
        return "an empty file"
    kind = next((name for magic, name in MAGIC if head.startswith(magic)), None)
    if kind != "a zip archive":
        return kind or "a file of unknown type"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        return "a damaged or truncated zip archive (an interrupted download or copy?)"
    return None if "config.json" in names else "a zip archive without a Keras model config (config.json)"


def load_model_file(path: Path, key: str = "ckpt") -> keras.Model:
    """Load a `.keras` model uncompiled and safely (safe_mode=True: no arbitrary code).

    Raises:
        FlexsegError: One short paragraph naming the file, what it is, and what `key` accepts.
    """
    if not path.exists():
        raise FlexsegError(f"{key}='{path}': no such file or folder. {ACCEPTS}.")
    kind = describe_file(path)
    if kind is not None:
        raise FlexsegError(f"{key}='{path}' is {kind}, not a Keras model. {ACCEPTS}.")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises ValueError/OSError/TypeError/KeyError for unusable models
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise FlexsegError(
            f"{key}='{path}' is a .keras archive that Keras cannot load ({first}). It may come from another "
            f"Keras version or hold layers flexseg does not know. {ACCEPTS}."
        ) from err
