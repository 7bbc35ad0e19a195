"""Files written whole or not at all, and a clear error when the disk is full.

`atomic_write` yields a temp path beside the target and renames it into place only when the block
succeeds; on any error the temp file is removed (a full disk gets its space back) and the target keeps
its previous content. An `OSError` becomes a `FlexsegError` naming the file, the reason, and the free
space where it goes (`shutil.disk_usage`), with what to do. Imports nothing heavy (the checkpoint
writer process uses it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator

from flexseg.errors import FlexsegError

CHECKPOINT_HINT = ("Free disk space there, then continue with train.resume=auto: the checkpoints committed "
                   "before stay intact.")
OUTPUT_HINT = ("Free disk space, or write to another folder (infer.output_dir, tiling.output_dir, hydra.run.dir); "
               "a training continues with train.resume=auto.")


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - the loop returns


def free_space(path: Path) -> str:
    """The free space of the filesystem `path` is (or would be) on, e.g. '1.2 GiB free'; '' when unknown."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f"{format_bytes(shutil.disk_usage(folder).free)} free"
    except OSError:
        return ""


def write_error(path: Path, err: BaseException, hint: str = OUTPUT_HINT) -> FlexsegError:
    """The user-facing error of a failed write of `path`: reason, free space there, what to do."""
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    if getattr(err, "errno", None) == errno.ENOSPC or "No space left" in reason:  # also as text from a child
        reason = "no space left on the device"
    free = free_space(path)
    return FlexsegError(f"Cannot write '{path}': {reason}{f' ({free} there)' if free else ''}. {hint}")


def temp_path(path: Path) -> Path:
    """`.<stem>.tmp<suffix>` beside `path` (the suffix kept: writers pick the format by it)."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: Path, hint: str = OUTPUT_HINT) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path`, on failure it is removed.

    Raises:
        FlexsegError: `write_error` for an `OSError` of the block, the folder's creation or the rename.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise write_error(path, err, hint) from err
        raise


def write_bytes(path: Path, data: bytes, hint: str = OUTPUT_HINT) -> Path:
    """Write `data` to `path` whole (temp file + rename), or raise `write_error`."""
    with atomic_write(path, hint) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return path
