"""Find the image/mask files of a split, pair them, and collect every problem before training.

Pairing is by the folder parts a glob matched (`train/*/images` -> the class folder) plus the file
stem — never by sort order. Every problem found (unpaired files, empty/corrupt/truncated/oversized
files, size mismatches, duplicate stems, missing folders) is collected, so one message lists them
all; `dataset.on_bad_file=skip` leaves bad pairs out with a warning each instead.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path

from flexseg.config.choices import BadFilePolicy
from flexseg.config.schemas import DatasetConfig
from flexseg.data.checks import BROKEN_LINK, Problem, inspect_file, is_broken_link
from flexseg.errors import FlexsegError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_EXTS = (*IMAGE_EXTS, ".npz")
# Problems no policy can skip: without them there is no split to speak of.
FATAL = ("missing-folder", "empty-split")
_MAX_LISTED = 25

Key = tuple[tuple[str, ...], str]  # (folder parts matched by the glob, file stem)


@dataclass(frozen=True)
class Split:
    """The paired files of one split, in a stable (sorted by key) order."""

    name: str
    images: tuple[str, ...]
    masks: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class SplitScan:
    """What a scan of one split found: good pairs, problems, and ignored non-image files."""

    split: Split
    problems: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


class DataProblemsError(FlexsegError):
    """Raised with every problem of a split (or of a folder of infer/tiled inputs) listed, one per line."""

    def __init__(self, split: str, problems: list[Problem], what: str | None = None) -> None:
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        skippable = all(p.kind not in FATAL for p in problems)
        left = "those images" if what else "the pairs"
        hint = f" Fix or remove these files, or set dataset.on_bad_file=skip to leave {left} out." if skippable else ""
        super().__init__(f"{what or f'The {split} split'} has {len(problems)} problem(s):\n{shown}{more}\n{hint.strip()}")


def _default_pattern(root: Path, split: str, kind: str) -> str:
    """`<split>/<kind>`, or `<split>/*/<kind>` for per-class subfolders (LISC Leukocyte layout)."""
    flat = f"{split}/{kind}"
    if not (root / flat).is_dir() and glob.glob(str(root / split / "*" / kind)):
        return f"{split}/*/{kind}"
    return flat


def _match_dirs(root: Path, pattern: str, key: str) -> tuple[list[tuple[Path, tuple[str, ...]]], Problem | None]:
    """Folders matching `pattern` with the parts its wildcards matched."""
    path = Path(pattern) if Path(pattern).is_absolute() else root / pattern
    if not glob.has_magic(str(path)):
        if path.is_dir():
            return [(path, ())], None
        return [], Problem(str(path), "missing-folder", f"folder does not exist ({key}). Point dataset.root at "
                           "your dataset (<root>/{train,valid,test}/{images,masks}) or set " + key + ".")
    dirs = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_dir())
    if not dirs:
        return [], Problem(str(path), "missing-folder", f"the glob matches no folder ({key}); check dataset.root and {key}.")
    parts = path.parts
    out = []
    for d in dirs:
        wild = tuple(dp for dp, pp in zip(d.parts, parts) if glob.has_magic(pp)) if len(d.parts) == len(parts) else d.parts
        out.append((d, wild))
    return out, None


def _list_files(dirs: list[tuple[Path, tuple[str, ...]]], exts: tuple[str, ...], scan: SplitScan) -> dict[Key, Path]:
    found: dict[Key, Path] = {}
    twice: set[Key] = set()
    for folder, wild in dirs:
        for path in sorted(folder.iterdir()):
            if is_broken_link(path):
                scan.problems.append(Problem(str(path), "broken-link", BROKEN_LINK))
                continue
            if not path.is_file():
                continue
            if path.suffix.lower() not in exts:
                scan.ignored.append(str(path))
                continue
            key = (wild, path.stem)
            if key in found:
                scan.problems.append(Problem(str(path), "duplicate-stem", f"shares its stem with {found[key]}; "
                                             "rename or remove one so each image pairs with exactly one mask."))
                twice.add(key)
                continue
            found[key] = path
    return {k: v for k, v in found.items() if k not in twice}  # ambiguous: no pair for that stem


def scan_split(cfg: DatasetConfig, split: str) -> SplitScan:
    """Pair the files of `split` and check each file's header; never raises for data problems."""
    root = Path(cfg.root)
    scan = SplitScan(Split(split, (), ()))
    files = []
    for kind, exts in (("images", IMAGE_EXTS), ("masks", MASK_EXTS)):
        key = f"dataset.{split}_{kind}"
        dirs, problem = _match_dirs(root, getattr(cfg, f"{split}_{kind}") or _default_pattern(root, split, kind), key)
        if problem:
            scan.problems.append(problem)
        files.append(_list_files(dirs, exts, scan))
    images, masks = files
    if any(p.kind == "missing-folder" for p in scan.problems):
        return scan
    for k in sorted(images.keys() - masks.keys()):
        scan.problems.append(Problem(str(images[k]), "unpaired-image", "image without a mask (pairs are matched by file stem)."))
    for k in sorted(masks.keys() - images.keys()):
        scan.problems.append(Problem(str(masks[k]), "unpaired-mask", "mask without an image (pairs are matched by file stem)."))
    good_images, good_masks = [], []
    for k in sorted(images.keys() & masks.keys()):
        img_size, img_problem = inspect_file(images[k], cfg.max_pixels)
        mask_size, mask_problem = inspect_file(masks[k], cfg.max_pixels)
        bad = [p for p in (img_problem, mask_problem) if p]
        if not bad and img_size != mask_size:
            bad.append(Problem(str(masks[k]), "size-mismatch", f"mask is {mask_size[1]}x{mask_size[0]} but its image "
                               f"{images[k].name} is {img_size[1]}x{img_size[0]}; a mask must cover its image pixel for pixel."))
        scan.problems.extend(bad)
        if not bad:
            good_images.append(str(images[k]))
            good_masks.append(str(masks[k]))
            scan.sizes[str(images[k])] = img_size
    if not good_images and not scan.problems:
        scan.problems.append(Problem(str(root / split), "empty-split", f"the {split} split has no image/mask pairs; add some."))
    scan.split = Split(split, tuple(good_images), tuple(good_masks))
    return scan


def build_split(cfg: DatasetConfig, split: str) -> Split:
    """The usable pairs of `split`, applying `dataset.on_bad_file`.

    Raises:
        DataProblemsError: listing every problem (policy `error`, or problems no policy can skip).
    """
    scan = scan_split(cfg, split)
    if scan.ignored:
        names = sorted({Path(p).name for p in scan.ignored})
        log.info("%s: ignored %d non-image file(s): %s", split, len(scan.ignored), ", ".join(names[:10]))
    fatal = [p for p in scan.problems if p.kind in FATAL]
    if fatal or (scan.problems and cfg.on_bad_file == BadFilePolicy.error):
        raise DataProblemsError(split, fatal or scan.problems)
    for problem in scan.problems:
        log.warning("skipping (dataset.on_bad_file=skip): %s", problem)
    if not scan.split:
        raise DataProblemsError(split, [Problem(str(Path(cfg.root) / split), "empty-split", "no usable pairs left.")])
    return scan.split


def list_image_files(folder: Path, key: str, allow_empty: bool = False) -> list[Path]:
    """Image files of one folder (`IMAGE_EXTS`, TIFF included; for infer/tiled), sorted by name.

    Outputs are named by stem, and tiled masks pair with images by stem, so stems must be unique.

    Raises:
        FlexsegError: naming `key` when the folder is missing, two files share a stem, or the
            folder holds no images (unless `allow_empty`).
    """
    if not folder.is_dir():
        raise FlexsegError(f"{key}: folder '{folder}' does not exist; set {key} to a folder of images.")
    files = sorted(p for p in folder.iterdir()  # broken links too: `check_inputs` reports them by name
                   if (p.is_file() or is_broken_link(p)) and p.suffix.lower() in IMAGE_EXTS)
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise FlexsegError(
                f"{key}: two files share the stem '{path.stem}': {seen[path.stem]} and {path}. "
                "Rename or remove one: outputs are named by stem, and masks pair with images by stem."
            )
        seen[path.stem] = path
    if not files and not allow_empty:
        raise FlexsegError(f"{key}: folder '{folder}' holds no images ({', '.join(IMAGE_EXTS)}).")
    return files


def check_inputs(files: list[Path], key: str, cfg: DatasetConfig, masks: dict[str, Path] | None = None,
                 lazy_tiff: bool = False) -> list[Path]:
    """The infer/tiled input images that pass training's pre-flight check (`inspect_file`).

    Empty, undecodable, truncated and oversized files are found before any prediction, and
    `dataset.on_bad_file` decides as for training: error lists every bad file in one message, skip
    leaves each out with a warning naming it.

    Args:
        files: images, as `list_image_files` gives them.
        key: the config key of their folder (`infer.images_dir`), for messages.
        cfg: the dataset config (`on_bad_file`, `max_pixels`).
        masks: masks by image stem (tiled scoring); an image whose mask is bad is left out too.
        lazy_tiff: TIFFs are read by rows (tiled mode): `max_pixels` does not limit them.

    Raises:
        DataProblemsError: listing every bad file (policy error), or when no image is left.
    """
    problems: list[Problem] = []
    good: list[Path] = []
    for image in files:
        found = []
        for path in (image, (masks or {}).get(image.stem)):
            if path is not None:
                tiff = lazy_tiff and path.suffix.lower() in (".tif", ".tiff")
                found.append(inspect_file(path, 2**63 if tiff else cfg.max_pixels)[1])
        problems.extend(p for p in found if p)
        if not any(found):
            good.append(image)
    what = f"{key} ('{files[0].parent}')" if files else key
    if problems and cfg.on_bad_file == BadFilePolicy.error:
        raise DataProblemsError(key, problems, what)
    for problem in problems:
        log.warning("skipping (dataset.on_bad_file=skip): %s", problem)
    if files and not good:
        raise DataProblemsError(key, [Problem(str(files[0].parent), "empty-split", "no usable images left.")], what)
    return good


def pair_keys(cfg: DatasetConfig, split: Split) -> list[Key]:
    """The pairing key of each pair of `split` (as `scan_split` paired it), in the split's order.

    Returns:
        One (folder parts the `dataset.<split>_images` glob matched, image file stem) per pair.
    """
    root = Path(cfg.root)
    pattern = getattr(cfg, f"{split.name}_images") or _default_pattern(root, split.name, "images")
    dirs, _ = _match_dirs(root, pattern, f"dataset.{split.name}_images")
    wild = {str(folder): parts for folder, parts in dirs}
    return [(wild.get(str(Path(image).parent), ()), Path(image).stem) for image in split.images]
