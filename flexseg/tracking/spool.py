"""The spool of a run: an append-only journal of the MLflow writes made while the tracking store was away.

A spool is a folder (`<run_dir>/mlflow_spool/`):

- `journal.jsonl`: one JSON record per write, in order (`op`: metrics, params, tags, text, artifact,
  image, end), each naming its `run_id` and tracking `uri`; every line is fsynced, so a crash loses at
  most the line being written, and a torn last line is never read (nor appended to).
- `files/NNNNNN/<name>`: the artifacts and images the records name, snapshots taken when logged (hard
  links, as flexseg replaces its files by rename, else copies; temp file + rename).
- `uploaded.json`: how many records are uploaded (`flexseg mode=sync` resumes after them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SPOOL_DIR = "mlflow_spool"
JOURNAL = "journal.jsonl"
MARKER = "uploaded.json"
FILES = "files"


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Journal:
    """Append records and files to a spool folder; read back the records not yet uploaded.

    Args:
        folder: The spool folder (created on the first write).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._sealed = False
        self._slot: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / JOURNAL

    def _seal(self) -> None:
        """Cut a torn last line (a process killed mid-write), so the next record starts on a line of its own."""
        self._sealed = True
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a JSON line, flushed to disk before returning."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self._sealed:
            self._seal()
        with open(self.path, "ab") as f:
            f.write((json.dumps(record) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())

    def _next_slot(self) -> Path:
        if self._slot is None:
            files = self.folder / FILES
            taken = [int(p.name) for p in files.iterdir() if p.name.isdigit()] if files.is_dir() else []
            self._slot = max(taken, default=0)
        self._slot += 1
        return self.folder / FILES / f"{self._slot:06d}"

    def store_file(self, path: Path) -> str:
        """Keep a snapshot of the file `path`; returns its name inside the spool (for the record)."""
        dest = self._next_slot() / Path(path).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:  # another file system, or links not supported
            shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
        return dest.relative_to(self.folder).as_posix()

    def store_image(self, image: np.ndarray) -> str:
        """Keep an (H, W, 3) uint8 picture as a PNG; returns its name inside the spool."""
        from PIL import Image

        dest = self._next_slot() / "image.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(".image.png.tmp")
        Image.fromarray(np.asarray(image)).save(tmp, format="png")
        os.replace(tmp, dest)
        return dest.relative_to(self.folder).as_posix()

    def file(self, name: str) -> Path:
        """The path of a file a record names."""
        return self.folder / name

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, in the order written; a torn last line is left out."""
        if not self.path.is_file():
            return []
        lines = self.path.read_bytes().split(b"\n")[:-1]  # after the last newline: nothing, or a torn line
        out = []
        for number, line in enumerate(lines, 1):
            try:
                out.append(json.loads(line))
            except ValueError:
                log.warning("%s: line %d is not a record; skipped", self.path, number)
        return out

    def uploaded(self) -> int:
        """How many records (from the first) are uploaded."""
        try:
            return int(json.loads((self.folder / MARKER).read_text())["records"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def mark_uploaded(self, count: int) -> None:
        """Record that the first `count` records are uploaded (temp file + rename)."""
        _replace_text(self.folder / MARKER, json.dumps({"records": count}))

    def pending(self) -> list[dict[str, Any]]:
        """The records not uploaded yet, in order."""
        return self.records()[self.uploaded() :]

    @contextlib.contextmanager
    def upload_lock(self) -> Iterator[bool]:
        """Hold the spool's upload lock while the block runs; yields False when another process holds it.

        Without `fcntl` (Windows) there is no lock: uploads then must not run at the same time.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield True
            return
        with open(self.folder / ".upload.lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def find_spools(roots: list[Path]) -> list[Path]:
    """Spool folders with records not yet uploaded, oldest first.

    Args:
        roots: Spool folders, run dirs, or folders of run dirs (searched to any depth).
    """
    found: set[Path] = set()
    for root in roots:
        if root.name == SPOOL_DIR:
            found.add(root)
        elif (root / SPOOL_DIR).is_dir():
            found.add(root / SPOOL_DIR)
        elif root.is_dir():
            found.update(root.rglob(SPOOL_DIR))
    pending = [p for p in found if p.is_dir() and Journal(p).pending()]
    return sorted(pending, key=lambda p: (p / JOURNAL).stat().st_mtime)


def find_local_spools(cwd: Path) -> list[Path]:
    """Pending spools of the run dirs under `cwd`/outputs and `cwd`/multirun (Hydra's run and sweep dirs).

    A bounded glob (run dirs up to 4 levels deep), cheap enough for every start.
    """
    found: list[Path] = []
    for base in ("outputs", "multirun"):
        for depth in range(1, 5):
            found.extend(cwd.glob("/".join([base, *["*"] * depth, SPOOL_DIR])))
    return find_spools(found)
