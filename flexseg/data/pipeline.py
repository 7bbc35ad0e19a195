"""tf.data pipelines streaming from files: decode, resize, mask -> class index, batch, prefetch.

Only file names are held in memory; images are read by a parallel `map` as batches are consumed.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from flexseg.data.discovery import Split
from flexseg.data.masks import decode_mask

AUTOTUNE = tf.data.AUTOTUNE

# (image (H, W, C) float32 in [0, 1], labels (H, W) int32, stateless seed (2,) int64) -> (image, labels)
AugmentFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def decode_image(path: tf.Tensor, size: tuple[int, int], channels: int) -> tf.Tensor:
    """Read an image file and resize it (bilinear, antialiased when shrinking).

    Returns:
        (H, W, channels) float32 in [0, 1].
    """
    img = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    img = tf.image.convert_image_dtype(img, tf.float32)  # uint8 and uint16 alike -> [0, 1]
    return tf.image.resize(img, size, method="bilinear", antialias=True)


def decode_labels(path: tf.Tensor, size: tuple[int, int], palette: np.ndarray) -> tf.Tensor:
    """Read a colour mask, map each pixel to its nearest class colour, resize with nearest neighbour.

    Returns:
        (H, W) int32 class indices.
    """
    mask = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    labels = decode_mask(tf.image.convert_image_dtype(mask, tf.uint8), palette)
    return tf.image.resize(labels[..., None], size, method="nearest")[..., 0]


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
) -> tf.data.Dataset:
    """Streaming (image, target) batches of one split.

    Args:
        split: paired file names.
        palette: (K, 3) class colours.
        size: (height, width) the model takes.
        channels: image channels the model takes.
        num_outputs: model outputs (K, or 1 for binary).
        batch_size: pairs per batch.
        shuffle: reshuffle file order every epoch (seeded).
        repeat: repeat forever (for `steps_per_epoch`).
        augment: online augmentation applied after decoding at model size; it gets a per-pair
            stateless seed drawn from `seed`, new every epoch, so runs are repeatable.

    Returns:
        Dataset of ((B, H, W, C) float32 images, (B, H, W, K) float32 targets).
    """
    ds = tf.data.Dataset.from_tensor_slices((list(split.images), list(split.masks)))
    if shuffle:
        ds = ds.shuffle(min(len(split), shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def load(paths: tuple[tf.Tensor, tf.Tensor], pair_seed: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        image = decode_image(paths[0], size, channels)
        labels = decode_labels(paths[1], size, palette)
        if augment is not None:
            image, labels = augment(image, labels, pair_seed)
        return image, encode_target(labels, num_outputs)

    if augment is None:
        ds = ds.map(lambda i, m: load((i, m)), num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def build_image_dataset(paths: Sequence[str], size: tuple[int, int], channels: int, batch_size: int) -> tf.data.Dataset:
    """Streaming batches of images resized to the model size (for inference).

    Returns:
        Dataset of (B, H, W, C) float32 images, in the order of `paths`.
    """
    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    ds = ds.map(lambda p: decode_image(p, size, channels), num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def labels_from_target(target: np.ndarray) -> np.ndarray:
    """Model target or prediction (B, H, W, K|1) -> (B, H, W) class indices."""
    if target.shape[-1] == 1:
        return (target[..., 0] > 0.5).astype(np.int64)
    return target.argmax(-1)
