"""tf.data pipelines streaming from files: decode, resize, mask -> class index, augment, batch, prefetch.

Only file names are held in memory (unless `cache`); pairs are read by a parallel `map` as batches
are consumed, so memory is O(batch), not O(dataset). Files are read by `flexseg.data.readers`
(through `tf.numpy_function`; OpenCV releases the GIL while decoding and resizing), so training,
`mode=stats` and inference read every format the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np
import tensorflow as tf

from flexseg.data.discovery import Split
from flexseg.data.masks import check_unmatched
from flexseg.config.choices import BadFilePolicy
from flexseg.data.readers import ImageOptions, MaskOptions, read_image
from flexseg.data.mask_files import read_foreign, read_labels
from flexseg.errors import ERROR_MARKER, FlexsegError

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE

# (image (H, W, C) float32 in [0, 1], labels (H, W) int32, stateless seed (2,) int64) -> (image, labels)
AugmentFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


@dataclass(frozen=True)
class ReadOptions:
    """Everything needed to turn an image/mask pair into model input."""

    image: ImageOptions
    mask: MaskOptions
    max_unmatched: float = 0.01
    on_bad_file: BadFilePolicy = BadFilePolicy.error


class _PairReader:
    """Reads one pair as numpy arrays; checks unmatched mask colours; warns once per skipped file."""

    def __init__(self, options: ReadOptions, size: tuple[int, int]) -> None:
        self.options, self.size = options, size
        self.warned: set[str] = set()

    def __call__(self, img_path: bytes, mask_path: bytes) -> tuple[np.ndarray, np.ndarray, bool]:
        o = self.options
        ipath, mpath = img_path.decode(), mask_path.decode()
        try:
            image = read_image(ipath, o.image, self.size)
            labels, unmatched = read_labels(mpath, o.mask)
            check_unmatched(mpath, unmatched, labels.size, o.mask.color_tolerance, o.max_unmatched,
                            foreign=lambda: read_foreign(mpath, o.mask))
        except FlexsegError as err:
            if o.on_bad_file != BadFilePolicy.skip:
                raise FlexsegError(ERROR_MARKER + str(err)) from None
            if mpath not in self.warned:
                self.warned.add(mpath)
                log.warning("skipping (dataset.on_bad_file=skip): %s", err)
            h, w = self.size
            return np.zeros((h, w, o.image.channels), np.float32), np.zeros((h, w), np.int32), False
        labels = cv2.resize(labels, (self.size[1], self.size[0]), interpolation=cv2.INTER_NEAREST)
        return image, labels.astype(np.int32), True


def encode_target(labels: tf.Tensor, num_outputs: int) -> tf.Tensor:
    """Class indices (H, W) -> model target: one-hot (H, W, K), or (H, W, 1) for a binary model."""
    if num_outputs == 1:
        return tf.cast(labels > 0, tf.float32)[..., None]
    return tf.one_hot(labels, num_outputs, dtype=tf.float32)


def build_dataset(
    split: Split,
    palette: np.ndarray,
    size: tuple[int, int],
    channels: int,
    num_outputs: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    shuffle_buffer: int = 256,
    augment: AugmentFn | None = None,
    options: ReadOptions | None = None,
    cache: bool = False,
    with_paths: bool = False,
    shard: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """Streaming (image, target) batches of one split.

    Args:
        split: paired file names.
        palette: (K, 3) class colours (used when `options` is None).
        size: (height, width) the model takes.
        channels: image channels the model takes (used when `options` is None).
        num_outputs: model outputs (K, or 1 for binary).
        batch_size: pairs per batch.
        shuffle: a new order every epoch (seeded): the whole list of file names is shuffled (names
            are cheap), so layouts listed class by class (train/<class>/images) mix from the first batch.
        repeat: repeat forever (for `steps_per_epoch`): pass after pass of whole batches, so a fit
            with steps_per_epoch = batches per pass keeps one iterator for the whole training (a new
            iterator every epoch stalled each epoch start by seconds) and sees every pair once per epoch.
        augment: online augmentation applied after decoding at model size; it gets a per-pair
            stateless seed drawn from `seed`, new every epoch, so runs are repeatable.
        options: how files are read (formats, colours, tolerance, bad-file policy).
        shuffle_buffer: with `cache`, the later epochs replay the first (shuffled) order through a
            shuffle buffer of this many decoded pairs.
        cache: keep decoded pairs in memory after the first pass.
        with_paths: also yield each pair's image path, so pairs skipped while reading
            (`dataset.on_bad_file=skip`) shift no names.
        shard: (workers, index): a multi-worker training's share of the split, every workers-th name
            of each epoch's shuffled order, before any file is read; batch_size stays the global
            batch (tf.distribute takes index's part of it). TensorFlow's own auto-sharding is
            switched off: it cannot shard by file here (names, not a file reader, start the
            pipeline) and would make every worker read every file.

    Returns:
        Dataset of ((B, H, W, C) float32 images, (B, H, W, K) float32 targets[, (B,) image paths]).
    """
    options = options or ReadOptions(ImageOptions(channels), MaskOptions(palette))
    reader = _PairReader(options, size)
    h, w = size
    c = options.image.channels

    def read(img_path: tf.Tensor, mask_path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        image, labels, ok = tf.numpy_function(reader, [img_path, mask_path], (tf.float32, tf.int32, tf.bool))
        image.set_shape((h, w, c))
        labels.set_shape((h, w))
        ok.set_shape(())
        return image, labels, ok, img_path

    ds = tf.data.Dataset.from_tensor_slices((list(split.images), list(split.masks)))
    if shuffle:  # every name in the buffer: a few bytes each, memory stays O(names + batch)
        ds = ds.shuffle(max(len(split), 1), seed=seed, reshuffle_each_iteration=True)
    if shard is not None:  # the same seeded order on every worker: together they take each name once
        ds = ds.shard(*shard)
    ds = ds.map(read, num_parallel_calls=AUTOTUNE, deterministic=True)
    if options.on_bad_file == BadFilePolicy.skip:
        ds = ds.filter(lambda image, labels, ok, path: ok)
    ds = ds.map(lambda image, labels, ok, path: (image, labels, path) if with_paths else (image, labels))
    if cache:
        ds = ds.cache()
        if shuffle:  # the cache replays the first epoch's order: reshuffle the decoded pairs within a buffer
            ds = ds.shuffle(max(min(len(split), shuffle_buffer), 1), seed=seed, reshuffle_each_iteration=True)
    if augment is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda pair, s: (*augment(pair[0], pair[1], s), *pair[2:]), num_parallel_calls=AUTOTUNE, deterministic=True
        )
    ds = ds.map(lambda image, labels, *path: (image, encode_target(labels, num_outputs), *path),
                num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size)
    if repeat:  # after batching: every pass is whole (its last batch may be short), reshuffled, re-augmented
        ds = ds.repeat()
    ds = ds.prefetch(AUTOTUNE)
    if shard is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        ds = ds.with_options(options)
    return ds


def build_image_dataset(
    paths: Sequence[str], size: tuple[int, int], channels: int, batch_size: int, options: ImageOptions | None = None
) -> tf.data.Dataset:
    """Streaming batches of images resized to the model size (for inference).

    Returns:
        Dataset of (B, H, W, C) float32 images, in the order of `paths`.
    """
    opts = options or ImageOptions(channels)

    def read_file(path: bytes) -> np.ndarray:
        try:
            return read_image(path.decode(), opts, size)
        except FlexsegError as err:  # marked, so the CLI prints it as a data error, not a traceback
            raise FlexsegError(ERROR_MARKER + str(err)) from None

    def read(path: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(read_file, [path], tf.float32)
        image.set_shape((size[0], size[1], opts.channels))
        return image

    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    return ds.map(read, num_parallel_calls=AUTOTUNE, deterministic=True).batch(batch_size).prefetch(AUTOTUNE)

