"""A small filesystem for disk-full tests: a tmpfs mounted under the test's tmp dir (root only, else skipped)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def mount_small_disk(folder: Path, size: str = "4m") -> Iterator[Path]:
    """Mount a tmpfs of `size` at `folder` for the duration of the generator; skip where that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the filesystem of `folder` with one file, then give `leave` bytes back; returns the file."""
    filler = folder / "filler.bin"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            fh.truncate(max(0, fh.tell() - leave))
    return filler
