"""k-fold cross-validation splits: train + valid pooled, dealt into folds by pair key, stratified.

Every pair of the train and valid splits gets a fold number from its pairing key (folder parts the
glob matched + file stem, see `flexseg.data.discovery.pair_keys`), so the folds do not depend on the
order files are listed in, nor on which of the two splits a pair came from. A stem that names
different images in train and valid (the synthetic dataset numbers each split from 0) gives two
pairs told apart by split name; the same image in both is an error (folds would leak it).
Pairs are stratified by which foreground classes their mask contains (nnU-Net-style k-fold, with the
class-presence balance scikit-learn's `StratifiedKFold` gives): within each group of equal class
presence the keys are shuffled with `dataset.fold_seed` and dealt round-robin, the deal continuing
across groups, so fold sizes differ by at most one.
"""

from __future__ import annotations

import filecmp
import logging
from collections import defaultdict
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from flexseg.config.schemas import DatasetConfig
from flexseg.data.discovery import FATAL, DataProblemsError, Split, build_split, pair_keys
from flexseg.data.mask_files import read_labels
from flexseg.data.readers import MaskOptions
from flexseg.errors import FlexsegError

log = logging.getLogger(__name__)


def compute_folds(keys: Sequence[Hashable], signatures: Sequence[Hashable], folds: int, seed: int) -> list[int]:
    """Fold number of each key, stratified by signature; a pure function of the (key, signature) set.

    Groups of equal signature are taken in sorted order; within a group the keys are sorted, then
    shuffled by one `numpy.random.Generator(seed)`, then dealt to folds 0, 1, ..., folds - 1, 0, ...
    with the counter running on from group to group.

    Args:
        keys: N unique, sortable pair keys.
        signatures: N sortable class-presence signatures (e.g. tuples of the classes present).
        folds: K >= 1.
        seed: the fold seed (`dataset.fold_seed`).

    Returns:
        N fold numbers in 0..K-1, in the order of `keys`; fold sizes differ by at most 1, and each
        signature's pairs are spread over the folds as evenly as the deal allows.
    """
    if len(keys) != len(signatures):
        raise ValueError(f"keys and signatures differ in length: {len(keys)} != {len(signatures)}.")
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}.")
    groups: dict[Hashable, list[Hashable]] = defaultdict(list)
    for key, signature in zip(keys, signatures):
        groups[signature].append(key)
    rng = np.random.default_rng(seed)
    fold_of: dict[Hashable, int] = {}
    dealt = 0
    for signature in sorted(groups):
        members = sorted(groups[signature])
        for i in rng.permutation(len(members)):
            fold_of[members[i]] = dealt % folds
            dealt += 1
    return [fold_of[key] for key in keys]


def classes_present(mask: str, options: MaskOptions) -> tuple[int, ...]:
    """The foreground class indices (1..K-1) a mask file contains, ascending."""
    labels, _ = read_labels(mask, options)
    counts = np.bincount(labels.ravel(), minlength=options.num_classes)
    return tuple(int(c) for c in np.flatnonzero(counts[1:]) + 1)


def _pooled(cfg: DatasetConfig) -> list[Split]:
    """The train split and, when it has usable pairs, the valid split (missing or empty is fine)."""
    splits = [build_split(cfg, "train")]
    try:
        splits.append(build_split(cfg, "valid"))
    except DataProblemsError as err:
        if not all(p.kind in FATAL for p in err.problems):
            raise
        log.info("dataset.folds: no valid split (%s); the folds are dealt from the train split alone",
                 str(err.problems[0]))
    return splits


def _pool_pairs(cfg: DatasetConfig) -> dict[tuple, tuple[str, str]]:
    """{key: (image, mask)} of train + valid; a stem both splits use keeps them apart by split name.

    Raises:
        FlexsegError: naming both files when the two images of such a stem are byte for byte the same.
    """
    found: dict[tuple, list[tuple[str, str, str]]] = defaultdict(list)
    for split in _pooled(cfg):
        for (parts, stem), image, mask in zip(pair_keys(cfg, split), split.images, split.masks):
            found[(parts, stem)].append((split.name, image, mask))
    pairs: dict[tuple, tuple[str, str]] = {}
    for (parts, stem), entries in found.items():
        if len(entries) == 2 and filecmp.cmp(entries[0][1], entries[1][1], shallow=False):
            raise FlexsegError(
                f"dataset.folds={cfg.folds}: '{entries[1][1]}' and '{entries[0][1]}' are the same image (the "
                "same stem and the same bytes) in valid and train; pooled into folds, a model would be "
                "validated on an image it trained on. Remove one of them."
            )
        for name, image, mask in entries:  # a stem in one split: no split name, its fold follows the stem
            pairs[("" if len(entries) == 1 else name, parts, stem)] = (image, mask)
    shared = sum(1 for entries in found.values() if len(entries) > 1)
    if shared:
        log.info("dataset.folds: %d stem(s) name different images in train and valid; each image is its own pair",
                 shared)
    return pairs


def build_fold_splits(cfg: DatasetConfig, options: MaskOptions, workers: int = 4) -> tuple[Split, Split]:
    """(train, valid) splits of fold `cfg.fold` of `cfg.folds`, drawn from train + valid pooled.

    Args:
        cfg: a validated dataset config with `folds` set.
        options: how masks are read (training's `read_options(cfg).mask`).
        workers: threads decoding masks for their class presence.

    Returns:
        (the pairs of every other fold, the pairs of fold `cfg.fold`), each sorted by key.

    Raises:
        FlexsegError: when train and valid hold the same image under one stem, or there are fewer pairs
            than folds.
        DataProblemsError: when a split has problems `dataset.on_bad_file` does not skip.
    """
    if cfg.folds is None:
        raise ValueError("build_fold_splits needs dataset.folds set.")
    pairs = _pool_pairs(cfg)
    if len(pairs) < cfg.folds:
        raise FlexsegError(f"dataset.folds={cfg.folds}, but train + valid hold only {len(pairs)} pair(s); "
                           f"use at most {len(pairs)} folds, or add data.")
    keys = sorted(pairs)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        signatures = list(pool.map(lambda key: classes_present(pairs[key][1], options), keys))
    fold_of = compute_folds(keys, signatures, cfg.folds, cfg.fold_seed)
    train = [pairs[k] for k, f in zip(keys, fold_of) if f != cfg.fold]
    valid = [pairs[k] for k, f in zip(keys, fold_of) if f == cfg.fold]
    log.info("dataset %s: fold %d of %d: %d train / %d valid pairs (stratified by class presence)",
             cfg.name, cfg.fold, cfg.folds, len(train), len(valid))
    return _split("train", train), _split("valid", valid)


def build_training_splits(cfg: DatasetConfig, options: MaskOptions) -> tuple[Split, Split]:
    """(train, valid) for training: the dataset's splits, or with `cfg.folds` set, fold `cfg.fold`'s."""
    if cfg.folds is None:
        return build_split(cfg, "train"), build_split(cfg, "valid")
    return build_fold_splits(cfg, options)


def fold_tags(cfg: DatasetConfig) -> dict[str, str]:
    """MLflow tags of a k-fold training run (`cv_folds`, `cv_fold`); none without `cfg.folds`."""
    return {} if cfg.folds is None else {"cv_folds": str(cfg.folds), "cv_fold": str(cfg.fold)}


def _split(name: str, pairs: list[tuple[str, str]]) -> Split:
    return Split(name, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
