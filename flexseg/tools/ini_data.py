"""The data side of a reference INI -> `dataset.*` keys: classes and their display colours, mask options, paths.

Reference data paths are relative to the INI's folder (`../../../dataset/EDF/train/images/`); they
are kept only where they exist on this machine, else resolved against the user's `--data-root` or
left out with a note saying to pass `dataset.root=`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flexseg.tools.ini_import import Conversion

SPLITS = ("train", "valid", "test")
# `[segmentation] black / white` colour names of the reference (its colorize step) -> RGB.
COLOR_NAMES = {
    "black": [0, 0, 0], "white": [255, 255, 255], "red": [255, 0, 0], "green": [0, 255, 0], "blue": [0, 0, 255],
    "yellow": [255, 255, 0], "cyan": [0, 255, 255], "magenta": [255, 0, 255], "gray": [128, 128, 128],
}
# Keys this module carries over (or reads, for the paths) itself.
HANDLED = {("mask", k) for k in ("rgb_map", "blur", "blur_size")} | {("image", "color_converter")}
HANDLED |= {("segmentation", k) for k in ("colorize", "black", "white")}
HANDLED |= {(s, k) for s in (*SPLITS, "eval") for k in ("image_datapath", "mask_datapath")}
HANDLED |= {("infer", "images_dir"), ("tiledinfer", "images_dir")}


class ConversionError(ValueError):
    """The INI and the converter's options do not fit together (e.g. `--names` of the wrong length)."""


def convert_data(ini: dict[str, dict[str, Any]], out: Conversion, base: Path, names: list[str] | None,
                 data_root: Path | None) -> None:
    """Set `dataset.*` (classes, display colours, mask options, root or split paths) from the INI.

    Args:
        ini: The parsed INI, {section: {key: value}}.
        out: The conversion to fill (values, notes, invalid values).
        base: The INI's folder: the reference resolves its relative paths against it.
        names: Class names in index order (a binary INI also takes the foreground name alone).
        data_root: The user's copy of the dataset (holding train/, valid/, test/), or None.

    Raises:
        ConversionError: when `names` does not list one name per class.
    """
    mask = ini.get("mask", {})
    binary = ini.get("model", {}).get("num_classes") == 1
    rgb_map = mask.get("rgb_map")
    if isinstance(rgb_map, dict):
        colors = [list(c) for c, _ in sorted(rgb_map.items(), key=lambda kv: kv[1])]
        if binary and len(colors) == 1:  # only the foreground listed: the background is black
            colors = [[0, 0, 0], *colors]
    else:  # binary / gray masks: black background, white foreground
        colors = [[0, 0, 0], [255, 255, 255]]
        out.set("dataset.mask_format", "gray" if binary or "threshold" in mask else "rgb")
    if names and binary and len(names) == 1:
        names = ["background", *names]
    names = names or ["background", *[f"class_{i}" for i in range(1, len(colors))]]
    if len(names) != len(colors):
        raise ConversionError(
            f"--names lists {len(names)} names but the INI defines {len(colors)} classes "
            f"({'binary: background and foreground' if binary else 'rgb_map'}); give one name per class, "
            f"background first, e.g. --names {','.join(['background', *[f'class_{i}' for i in range(1, len(colors))]])}."
        )
    classes = [{"name": n, "color": c} for n, c in zip(names, colors)]
    _display_colors(ini.get("segmentation", {}), classes, out)
    out.set("dataset.classes", classes)
    if "blur" in mask:  # the reference blurs gray masks with `blur_size` before thresholding
        size = mask.get("blur_size", 3)
        out.set("dataset.blur", int(size[0] if isinstance(size, (tuple, list)) else size) if mask["blur"] else 0)
    conv = ini.get("image", {}).get("color_converter")
    if conv:
        out.set("dataset.color_converter", str(conv).removeprefix("cv2."))
    _convert_paths(ini, out, base, data_root)


def _display_colors(seg: dict[str, Any], classes: list[dict[str, Any]], out: Conversion) -> None:
    """`[segmentation] colorize` with `black` / `white` colour names -> `display_color` of a binary model's classes."""
    if not seg.get("colorize"):
        return  # masks are written in their own colours
    if len(classes) != 2:
        out.notes.append("[segmentation] colorize applies to black/white masks; these classes keep their rgb_map colours.")
        return
    for cls, key in zip(classes, ("black", "white")):
        if key not in seg:
            continue
        rgb = COLOR_NAMES.get(str(seg[key]).lower())
        if rgb is None:
            out.invalid.append(f"[segmentation] {key} = {seg[key]!r} (a colour name: {', '.join(COLOR_NAMES)})")
        elif rgb != cls["color"]:
            cls["display_color"] = rgb


def _dataset_prefix(paths: dict[str, str]) -> str | None:
    """The common `<root>` (as written) when every split path is `<root>/<split>/[*/]images`, else None."""
    roots = set()
    for split, p in paths.items():
        parts = Path(p).parts
        if split not in parts:
            return None
        i = len(parts) - 1 - parts[::-1].index(split)
        roots.add(Path(*parts[:i]) if i else Path("."))
    return str(roots.pop()) if len(roots) == 1 else None


def _convert_paths(ini: dict[str, dict[str, Any]], out: Conversion, base: Path, data_root: Path | None) -> None:
    """`dataset.root` (or the split folders), `infer.images_dir`, `tiling.images_dir` that exist here."""
    sections = {s: ini.get(s, {}) for s in SPLITS}
    if "image_datapath" not in sections["valid"]:
        sections["valid"] = ini.get("eval", {})  # older INIs name the validation split [eval]
    images = {s: str(v["image_datapath"]) for s, v in sections.items() if "image_datapath" in v}
    prefix = _dataset_prefix(images) if images else None
    if data_root is not None:
        out.set("dataset.root", str(data_root.resolve()))
        if images and prefix is None:
            out.notes.append("The INI's split paths are not <root>/<split>/images: set dataset.{split}_images and "
                             "dataset.{split}_masks (relative to dataset.root or absolute) in the experiment.")
    elif prefix is not None and (base / prefix).resolve().is_dir():
        out.set("dataset.root", str((base / prefix).resolve()))
    elif prefix is not None:
        out.notes.append(f"dataset.root left out: the INI's data folder '{prefix}' (relative to the INI) does not "
                         "exist here. Add dataset.root=DIR (your copy: DIR/train, DIR/valid, DIR/test) to the "
                         "command, or import again with --data-root DIR.")
    else:
        for split, section in sections.items():
            for kind, key in (("images", "image_datapath"), ("masks", "mask_datapath")):
                if key in section and (base / str(section[key])).resolve().is_dir():
                    out.set(f"dataset.{split}_{kind}", str((base / str(section[key])).resolve()))
                elif key in section:
                    out.notes.append(f"dataset.{split}_{kind} left out: [{split}] {key} '{section[key]}' does not "
                                     f"exist here; set dataset.{split}_{kind}=DIR (or dataset.root=DIR).")
    for section, key, default in (("infer", "infer.images_dir", "the test split's images"),
                                  ("tiledinfer", "tiling.images_dir", "<dataset.root>/large/images")):
        raw = ini.get(section, {}).get("images_dir")
        if raw is None:
            continue
        if (base / str(raw)).resolve().is_dir():
            out.set(key, str((base / str(raw)).resolve()))
        else:
            out.notes.append(f"{key} left out: [{section}] images_dir '{raw}' (relative to the INI) does not exist "
                             f"here, so mode={'infer' if section == 'infer' else 'tiled'} reads {default}; "
                             f"pass {key}=DIR for other images.")
