"""Find image/mask files of a split and pair them by file stem (never by sort order)."""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path

from flexseg.config import DatasetConfig
from flexseg.errors import FlexsegError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
SPLITS = ("train", "valid", "test")
_MAX_LISTED = 10


@dataclass(frozen=True)
class Split:
    """The paired files of one split, in a stable (sorted by stem) order."""

    name: str
    images: tuple[str, ...]
    masks: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)


def _listing(paths: list[str]) -> str:
    shown = ", ".join(paths[:_MAX_LISTED])
    more = len(paths) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def resolve_dirs(root: Path, pattern: str, key: str) -> list[Path]:
    """Folders named by `pattern` (a folder or a glob of folders), relative to `root` unless absolute.

    Raises:
        FlexsegError: naming `key` when nothing matches.
    """
    path = Path(pattern) if Path(pattern).is_absolute() else root / pattern
    if glob.has_magic(str(path)):
        dirs = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_dir())
        if not dirs:
            raise FlexsegError(f"{key}: the glob '{path}' matches no folder; check dataset.root and {key}.")
        return dirs
    if not path.is_dir():
        raise FlexsegError(
            f"{key}: folder '{path}' does not exist. Point dataset.root at your dataset "
            f"(expected layout <root>/{{train,valid,test}}/{{images,masks}}) or set {key}."
        )
    return [path]


def list_images(dirs: list[Path]) -> dict[str, Path]:
    """Image files of `dirs` by stem; other files (.DS_Store, .txt, ...) are ignored.

    Raises:
        FlexsegError: when one stem occurs twice (e.g. a.png and a.jpg).
    """
    found: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_EXTS or not path.is_file():
                if path.is_file():
                    log.debug("ignoring non-image file %s", path)
                continue
            if path.stem in found:
                raise FlexsegError(
                    f"Two files share the stem '{path.stem}': {found[path.stem]} and {path}. "
                    "Rename or remove one so each image pairs with exactly one mask."
                )
            found[path.stem] = path
    return found


def build_split(cfg: DatasetConfig, split: str) -> Split:
    """Pair the images and masks of `split` ('train', 'valid' or 'test') by file stem.

    Raises:
        FlexsegError: for a missing folder, an empty split, or images/masks without partner.
    """
    root = Path(cfg.root)
    img_key, mask_key = f"dataset.{split}_images", f"dataset.{split}_masks"
    images = list_images(resolve_dirs(root, getattr(cfg, f"{split}_images") or f"{split}/images", img_key))
    masks = list_images(resolve_dirs(root, getattr(cfg, f"{split}_masks") or f"{split}/masks", mask_key))
    lonely_images = sorted(str(images[s]) for s in images.keys() - masks.keys())
    lonely_masks = sorted(str(masks[s]) for s in masks.keys() - images.keys())
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"{len(lonely_images)} image(s) without a mask: {_listing(lonely_images)}")
        if lonely_masks:
            parts.append(f"{len(lonely_masks)} mask(s) without an image: {_listing(lonely_masks)}")
        raise FlexsegError(
            f"The {split} split is not paired ({'; '.join(parts)}). Images and masks pair by file stem; "
            "add the missing files or remove the extra ones."
        )
    if not images:
        raise FlexsegError(f"The {split} split under '{root}' has no images ({img_key}); add image/mask pairs.")
    stems = sorted(images)
    return Split(split, tuple(str(images[s]) for s in stems), tuple(str(masks[s]) for s in stems))


def list_image_files(folder: Path, key: str) -> list[Path]:
    """Image files of one folder (for infer/tiled), sorted by name.

    Raises:
        FlexsegError: naming `key` when the folder is missing or holds no images.
    """
    files = sorted(list_images(resolve_dirs(folder, ".", key)).values())
    if not files:
        raise FlexsegError(f"{key}: folder '{folder}' holds no images ({', '.join(IMAGE_EXTS)}).")
    return files
