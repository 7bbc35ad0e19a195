"""Checkpoint files written in the background, from a snapshot taken between two training steps.

`ModelSnapshot.capture` copies what `model.save` would write (config, weights, optimizer state) into
memory on the training thread (a memory copy: ~0.1 s for 94 MB); `write_snapshot` turns it into a
`.keras` file (temp file + rename) in a child process (`flexseg.training.keras_file`), driven from
`CheckpointWriter`'s thread while training goes on, so the file holds exactly the weights of the
epoch that was snapshotted. The file is the same zip that
`model.save` writes (`metadata.json`, `config.json`, `model.weights.h5`) and loads with
`keras.saving.load_model`. Keras has no public API to save from a copy; where its saving internals
are not what this module expects, `capture` returns None and callers save synchronously instead.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import keras
import numpy as np

from flexseg import storage
from flexseg.errors import FlexsegError
from flexseg.training.keras_file import CheckpointProcess, write_keras_file

log = logging.getLogger(__name__)

try:  # Keras 3 saving internals (checked by tests/training/test_checkpoint_writer.py)
    from keras.src.saving import saving_lib as _saving_lib
except ImportError:  # pragma: no cover - another Keras layout: synchronous saves
    _saving_lib = None


def _recording_store_class() -> Optional[type]:
    """An `H5IOStore` that keeps (path, metadata, key, array copy) in memory instead of writing HDF5."""
    if _saving_lib is None or not hasattr(_saving_lib, "H5IOStore"):
        return None

    class RecordingStore(_saving_lib.H5IOStore):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:  # no HDF5 file: everything stays in `entries`
            self.mode, self.archive, self.io_file, self.h5_file = "w", None, None, None
            self.entries: list[tuple[str, Optional[dict], list[tuple[str, np.ndarray]]]] = []

        def __bool__(self) -> bool:
            return True

        def make(self, path: str, metadata: Optional[dict] = None) -> RecordingStore:
            self.entries.append((path, metadata, []))
            return self

        def __setitem__(self, key: str, value: Any) -> None:
            self.entries[-1][2].append((key, np.array(keras.ops.convert_to_numpy(value), copy=True)))

        def close(self) -> None:
            pass

    return RecordingStore


_RECORDING_STORE = _recording_store_class()
_SKIPSET_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def _cache_attr_skipsets() -> None:
    """Make Keras' saving walk reuse its attribute skip sets (~0.2 s less per snapshot and per save).

    Keras 3 rebuilds the skip set of each object type on every save by making throwaway layers and
    metrics: `get_attr_skipset` looks its cache up under `saving_attr_skiplist_<type>` but stores it
    under `saving_attr_skipset_<type>`. This stores the same sets under the key it reads, in the
    calling thread (Keras' global state is per thread).
    """
    from keras.src.backend.common import global_state

    for obj_type in _SKIPSET_TYPES:
        key = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(key) is None:
            global_state.set_global_attribute(key, _saving_lib.get_attr_skipset(obj_type))


@dataclass
class ModelSnapshot:
    """What `model.save` writes, held in memory: JSON texts and variable arrays by store path."""

    config_json: str
    metadata_json: str
    entries: list[tuple[str, Optional[dict], list[tuple[str, np.ndarray]]]] = field(default_factory=list)

    @classmethod
    def capture(cls, model: keras.Model) -> Optional[ModelSnapshot]:
        """Copy the model's config, weights and optimizer state; None where Keras' internals differ."""
        if _RECORDING_STORE is None:
            return None
        try:
            _cache_attr_skipsets()
            config_json, metadata_json = _saving_lib._serialize_model_as_json(model)
            store = _RECORDING_STORE()
            _saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                                    visited_saveables=set())
        except (AttributeError, TypeError, ValueError, ImportError) as err:  # pragma: no cover - Keras changed
            log.warning("background checkpoint writes are off (%s); saving synchronously", err)
            return None
        return cls(config_json, metadata_json, store.entries)


def write_snapshot(snapshot: ModelSnapshot, path: Path, process: Optional[CheckpointProcess] = None) -> Path:
    """Write `snapshot` as a `.keras` file at `path` (temp file in the same folder, then rename), in
    `process` when given (off the GIL of the training process), else here.

    Raises:
        FlexsegError: The write failed (`flexseg.storage.write_error`: the path, the free space there).
    """
    try:
        if process is not None:
            return process.write(path, snapshot.config_json, snapshot.metadata_json, snapshot.entries)
        return write_keras_file(path, snapshot.config_json, snapshot.metadata_json, snapshot.entries)
    except OSError as err:
        raise storage.write_error(path, err, storage.CHECKPOINT_HINT) from err


def link_or_copy(source: Path, target: Path) -> Path:
    """Make `target` the same file as `source` (hard link; a copy where links fail), atomically."""
    with storage.atomic_write(target, storage.CHECKPOINT_HINT) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(source, tmp)
    return target


class CheckpointWriter:
    """One background thread that runs file writes in the order they were submitted.

    A failed write is raised (as `FlexsegError`) by the next `submit`, `poll` or `flush` on the
    training thread: training stops instead of going on without checkpoints.
    """

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="flexseg-ckpt")
        self.process = CheckpointProcess()  # writes the .keras files, started on first use
        self._pending: list[tuple[concurrent.futures.Future, Optional[Callable[[], None]]]] = []

    def submit(self, work: Callable[[], Any], then: Optional[Callable[[], None]] = None) -> None:
        """Run `work` in the background; `then` runs on the training thread once it succeeded."""
        self.poll()
        self._pending.append((self._pool.submit(work), then))

    def after(self, then: Callable[[], None]) -> None:
        """Run `then` on the training thread after every write submitted so far (now if none is pending)."""
        if self._pending:
            self._pending.append((self._pending[-1][0], then))
        else:
            then()

    def poll(self, wait: bool = False) -> None:
        """Finish bookkeeping of the writes done so far (all of them with `wait`); raise a failed one."""
        while self._pending and (wait or self._pending[0][0].done()):
            future, then = self._pending.pop(0)
            try:
                future.result()
            except FlexsegError:  # a write that names its file and the free space (`flexseg.storage`)
                self._pending.clear()
                raise
            except OSError as err:
                self._pending.clear()
                raise FlexsegError(f"Writing a checkpoint failed: {err}. {storage.CHECKPOINT_HINT}") from err
            if then is not None:
                then()

    def flush(self) -> None:
        """Wait for every submitted write (and run what follows them)."""
        self.poll(wait=True)

    def close(self) -> None:
        """Wait for every write, then stop the writer process."""
        try:
            self.flush()
        finally:
            self.process.close()

    @property
    def busy(self) -> bool:
        return bool(self._pending)
