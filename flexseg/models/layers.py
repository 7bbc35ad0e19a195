"""The custom Keras layers of the transformer models (swin_unet, transunet), registered for `.keras` files.

Each is registered with `keras.saving.register_keras_serializable(package="flexseg")`, so a saved
model reloads with `safe_mode=True` once this module is imported (`flexseg.inference.checkpoint`
imports it). All work on (batch, H, W, C) feature maps with the spatial size read at call time,
so a model rebuilt for another input size (`flexseg.inference.predict.with_input_size`) keeps its
weights: window attention only needs H and W to be multiples of the window.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
import numpy as np
from keras import ops

SHIFT_MASK = -100.0  # added to the logits of token pairs from different regions of a shifted window (Swin's value)


def compute_relative_position_index(window_size: int) -> np.ndarray:
    """Index into a ((2w-1)**2, heads) bias table for every (query, key) pair of a w x w window.

    Returns:
        int32 array of shape (w*w, w*w).
    """
    coords = np.stack(np.meshgrid(np.arange(window_size), np.arange(window_size), indexing="ij")).reshape(2, -1)
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window_size - 1)
    return (relative[..., 0] * (2 * window_size - 1) + relative[..., 1]).astype(np.int32)


def _to_windows(x: Any, height: Any, width: Any, window: int, channels: int) -> Any:
    """(batch, H, W, C) -> (batch * H/w * W/w, w*w, C)."""
    x = ops.reshape(x, (-1, height // window, window, width // window, window, channels))
    return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, window * window, channels))


def _from_windows(x: Any, height: Any, width: Any, window: int, channels: int) -> Any:
    """(batch * H/w * W/w, w*w, C) -> (batch, H, W, C)."""
    x = ops.reshape(x, (-1, height // window, width // window, window, window, channels))
    return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, height, width, channels))


@keras.saving.register_keras_serializable(package="flexseg")
class WindowAttention(keras.layers.Layer):
    """Multi-head self-attention inside w x w windows, optionally cyclically shifted (Swin Transformer).

    Args:
        num_heads: attention heads; the channel count must be divisible by it.
        window_size: w; H and W of the input must be multiples of it.
        shift: cyclic shift (w // 2 in every second Swin block, 0 otherwise); pairs of tokens that the
            shift brought together from different image regions are masked out.
        dropout: dropout rate of the attention probabilities.
        kernel_initializer: of the qkv and output projections.

    Call: (batch, H, W, C) -> (batch, H, W, C).
    """

    def __init__(self, num_heads: int, window_size: int, shift: int = 0, dropout: float = 0.0,
                 kernel_initializer: str = "glorot_uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_heads, self.window_size, self.shift = int(num_heads), int(window_size), int(shift)
        self.dropout, self.kernel_initializer = float(dropout), kernel_initializer
        self.index = compute_relative_position_index(self.window_size).reshape(-1)
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape: tuple[Optional[int], ...]) -> None:
        dim = int(input_shape[-1])
        if dim % self.num_heads:
            raise ValueError(f"WindowAttention: {dim} channels are not divisible by num_heads={self.num_heads}.")
        self.qkv = keras.layers.Dense(3 * dim, kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
                                      name="qkv")
        self.qkv.build((None, dim))
        self.proj = keras.layers.Dense(dim, kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
                                       name="proj")
        self.proj.build((None, dim))
        self.bias_table = self.add_weight(
            shape=((2 * self.window_size - 1) ** 2, self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02), name="relative_position_bias",
        )

    def _shift_mask(self, height: Any, width: Any) -> Any:
        """(windows, w*w, w*w) float32: SHIFT_MASK where two tokens of a shifted window come from different regions."""
        w, s = self.window_size, self.shift
        rows = ops.cast(ops.arange(height) >= height - w, "int32") + ops.cast(ops.arange(height) >= height - s, "int32")
        cols = ops.cast(ops.arange(width) >= width - w, "int32") + ops.cast(ops.arange(width) >= width - s, "int32")
        regions = ops.cast(rows[:, None] * 3 + cols[None, :], "float32")[None, :, :, None]
        regions = _to_windows(regions, height, width, w, 1)[..., 0]  # (windows, w*w)
        return ops.where(ops.not_equal(regions[:, :, None], regions[:, None, :]), SHIFT_MASK, 0.0)

    def call(self, x: Any, training: Optional[bool] = None) -> Any:
        _, height, width, channels = ops.shape(x)
        w, heads = self.window_size, self.num_heads
        tokens, head_dim = w * w, channels // heads
        if self.shift:
            x = ops.roll(x, shift=(-self.shift, -self.shift), axis=(1, 2))
        qkv = self.qkv(_to_windows(x, height, width, w, channels))  # (batch * windows, w*w, 3C)
        qkv = ops.transpose(ops.reshape(qkv, (-1, tokens, 3, heads, head_dim)), (2, 0, 3, 1, 4))
        q, k, v = qkv[0], qkv[1], qkv[2]  # (batch * windows, heads, w*w, head_dim)
        logits = ops.matmul(q * ops.cast(head_dim**-0.5, q.dtype), ops.transpose(k, (0, 1, 3, 2)))
        bias = ops.transpose(ops.reshape(ops.take(self.bias_table, self.index, axis=0), (tokens, tokens, heads)),
                             (2, 0, 1))
        logits = ops.cast(logits, "float32") + ops.cast(bias, "float32")[None]
        if self.shift:
            mask = self._shift_mask(height, width)
            logits = ops.reshape(logits, (-1, ops.shape(mask)[0], heads, tokens, tokens)) + mask[None, :, None]
            logits = ops.reshape(logits, (-1, heads, tokens, tokens))
        probs = self.attention_dropout(ops.cast(ops.softmax(logits, axis=-1), self.compute_dtype), training=training)
        out = ops.reshape(ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3)), (-1, tokens, channels))
        out = _from_windows(self.proj(out), height, width, w, channels)
        if self.shift:
            out = ops.roll(out, shift=(self.shift, self.shift), axis=(1, 2))
        return out

    def compute_output_shape(self, input_shape: tuple[Optional[int], ...]) -> tuple[Optional[int], ...]:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_heads": self.num_heads, "window_size": self.window_size,
                "shift": self.shift, "dropout": self.dropout, "kernel_initializer": self.kernel_initializer}


class _BlockRearrange(keras.layers.Layer):
    """Moves b x b pixel blocks between space and channels; the subclass says which way."""

    def __init__(self, block_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="flexseg")
class SpaceToDepth(_BlockRearrange):
    """(batch, H, W, C) -> (batch, H/b, W/b, b*b*C): each b x b block of pixels becomes one (Swin's patch merging)."""

    def call(self, x: Any) -> Any:
        _, height, width, channels = ops.shape(x)
        b = self.block_size
        x = ops.reshape(x, (-1, height // b, b, width // b, b, channels))
        return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, height // b, width // b, b * b * channels))

    def compute_output_shape(self, input_shape: tuple[Optional[int], ...]) -> tuple[Optional[int], ...]:
        n, h, w, c = input_shape
        b = self.block_size
        return n, None if h is None else h // b, None if w is None else w // b, c * b * b


@keras.saving.register_keras_serializable(package="flexseg")
class DepthToSpace(_BlockRearrange):
    """(batch, H, W, b*b*C) -> (batch, H*b, W*b, C): the inverse of `SpaceToDepth` (Swin-UNet's patch expanding)."""

    def call(self, x: Any) -> Any:
        _, height, width, channels = ops.shape(x)
        b = self.block_size
        x = ops.reshape(x, (-1, height, width, b, b, channels // (b * b)))
        return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, height * b, width * b, channels // (b * b)))

    def compute_output_shape(self, input_shape: tuple[Optional[int], ...]) -> tuple[Optional[int], ...]:
        n, h, w, c = input_shape
        b = self.block_size
        return n, None if h is None else h * b, None if w is None else w * b, c // (b * b)


@keras.saving.register_keras_serializable(package="flexseg")
class PositionEmbedding2D(keras.layers.Layer):
    """Adds a learned (grid_height, grid_width, C) position embedding to a (batch, H, W, C) token map.

    For another (H, W) than the grid it was built for (a model rebuilt for larger tiles), the
    embedding is resized bilinearly, as ViTs are fine-tuned at other resolutions. H and W must be
    static (flexseg builds and traces every model at a fixed size).
    """

    def __init__(self, grid_height: int, grid_width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grid_height, self.grid_width = int(grid_height), int(grid_width)

    def build(self, input_shape: tuple[Optional[int], ...]) -> None:
        self.embedding = self.add_weight(
            shape=(self.grid_height, self.grid_width, int(input_shape[-1])),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02), name="embedding",
        )

    def call(self, x: Any) -> Any:
        _, height, width, _ = ops.shape(x)
        embedding = ops.convert_to_tensor(self.embedding)
        if (height, width) != (self.grid_height, self.grid_width):
            embedding = ops.image.resize(embedding[None], (height, width), interpolation="bilinear")[0]
        return x + ops.cast(embedding, x.dtype)[None]

    def compute_output_shape(self, input_shape: tuple[Optional[int], ...]) -> tuple[Optional[int], ...]:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "grid_height": self.grid_height, "grid_width": self.grid_width}
