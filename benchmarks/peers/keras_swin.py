"""The Keras example's Swin Transformer (Keras 3, JAX backend), timed per training step: the peer
of swinjax's ``keras_example`` preset.

The model and training of the Keras example "Image classification with Swin Transformers"
(CIFAR-100): 2x2-pixel patches (16 x 16 patches of 12 values, cut before the model as the
example's input pipeline does), a dense patch embedding of width 64 plus a learned position
embedding, two Swin blocks (window 2, the second shifted by 1, 8 heads, MLP 256, dropout 0.03,
the example's element-wise "drop path"), patch merging to width 128, global average pooling and
a 100-class softmax; AdamW (learning rate 1e-3, weight decay 1e-4) on categorical cross-entropy
with label smoothing 0.1, accuracy and top-5 metrics. Inputs are random, of the example's shape.

    KERAS_BACKEND=jax python benchmarks/peers/keras_swin.py [--steps 30] [--warmup 3]
        [--batch 128] [--json]

Prints training (``train_on_batch``) and inference (``predict_on_batch``) images/s; both are
jit-compiled by Keras' JAX backend and return host values, so each timed call is a whole step.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402
from timing import images_per_second, report  # noqa: E402

GRID = 16  # patches per side: a 32x32 image in 2x2-pixel patches
PATCH_VALUES = 2 * 2 * 3
CLASSES = 100
WIDTH, HEADS, WINDOW, SHIFT, MLP = 64, 8, 2, 1, 256
DROPOUT = 0.03


def relative_position_index(window: int) -> np.ndarray:
    """``[N * N]`` rows of the ``(2 window - 1)^2``-row bias table for every (query, key) pair
    of a window's ``N = window^2`` tokens (row-major)."""
    row, col = np.divmod(np.arange(window * window), window)
    d_row = row[:, None] - row[None, :] + window - 1
    d_col = col[:, None] - col[None, :] + window - 1
    return (d_row * (2 * window - 1) + d_col).reshape(-1)


def to_windows(x_BHWC, window: int):
    """``[B, H, W, C]`` -> ``[B * windows, window^2, C]``, windows in row-major order."""
    _, h, w, c = x_BHWC.shape
    x = ops.reshape(x_BHWC, (-1, h // window, window, w // window, window, c))
    return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, window * window, c))


def from_windows(x_BwNC, window: int, h: int, w: int):
    """The inverse of :func:`to_windows`."""
    c = x_BwNC.shape[-1]
    x = ops.reshape(x_BwNC, (-1, h // window, w // window, window, window, c))
    return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, h, w, c))


def shift_mask(grid: int, window: int, shift: int) -> np.ndarray:
    """``[windows, N, N]`` added to the shifted block's attention logits: 0 between tokens of one
    region of the rolled grid, -100 between tokens the roll brought together."""
    region = np.zeros((1, grid, grid, 1), np.float32)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, rows in enumerate(bands):
        for j, cols in enumerate(bands):
            region[:, rows, cols] = 3 * i + j
    labels = np.asarray(to_windows(region, window))[..., 0]  # [windows, N]
    return np.where(labels[:, :, None] != labels[:, None, :], -100.0, 0.0).astype(np.float32)


class WindowAttention(layers.Layer):
    """Multi-head self-attention inside each window, with a learned relative position bias."""

    def __init__(self, mask: np.ndarray | None, **kwargs):
        super().__init__(**kwargs)
        self.mask = mask
        self.scale = (WIDTH // HEADS) ** -0.5
        self.index = relative_position_index(WINDOW)
        self.qkv = layers.Dense(3 * WIDTH)
        self.proj = layers.Dense(WIDTH)
        self.dropout = layers.Dropout(DROPOUT)
        self.bias_table = self.add_weight(
            shape=((2 * WINDOW - 1) ** 2, HEADS), initializer="zeros", name="bias_table"
        )

    def call(self, x_BwNC):
        n, c = x_BwNC.shape[1], x_BwNC.shape[2]
        qkv = ops.reshape(self.qkv(x_BwNC), (-1, n, 3, HEADS, c // HEADS))
        q, k, v = (ops.transpose(qkv[:, :, i], (0, 2, 1, 3)) for i in range(3))  # [Bw, h, N, d]
        logits = ops.matmul(q * self.scale, ops.transpose(k, (0, 1, 3, 2)))
        bias = ops.reshape(ops.take(self.bias_table, self.index, axis=0), (n, n, HEADS))
        logits = logits + ops.expand_dims(ops.transpose(bias, (2, 0, 1)), 0)
        if self.mask is not None:
            windows = self.mask.shape[0]
            logits = ops.reshape(logits, (-1, windows, HEADS, n, n)) + self.mask[None, :, None]
            logits = ops.reshape(logits, (-1, HEADS, n, n))
        weights = self.dropout(ops.softmax(logits, axis=-1))
        out = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
        return self.dropout(self.proj(ops.reshape(out, (-1, n, c))))


class SwinBlock(layers.Layer):
    """Pre-norm window attention (rolled by ``shift`` first) and MLP, each with a residual."""

    def __init__(self, shift: int, **kwargs):
        super().__init__(**kwargs)
        self.shift = shift
        self.norm1 = layers.LayerNormalization(epsilon=1e-5)
        self.attn = WindowAttention(shift_mask(GRID, WINDOW, shift) if shift else None)
        self.norm2 = layers.LayerNormalization(epsilon=1e-5)
        self.mlp = keras.Sequential(
            [
                layers.Dense(MLP),
                layers.Activation(keras.activations.gelu),
                layers.Dropout(DROPOUT),
                layers.Dense(WIDTH),
                layers.Dropout(DROPOUT),
            ]
        )
        self.drop_path = layers.Dropout(DROPOUT)  # the example's, element-wise

    def call(self, x_BLC):
        y = ops.reshape(self.norm1(x_BLC), (-1, GRID, GRID, WIDTH))
        if self.shift:
            y = ops.roll(y, shift=(-self.shift, -self.shift), axis=(1, 2))
        y = from_windows(self.attn(to_windows(y, WINDOW)), WINDOW, GRID, GRID)
        if self.shift:
            y = ops.roll(y, shift=(self.shift, self.shift), axis=(1, 2))
        x_BLC = x_BLC + self.drop_path(ops.reshape(y, (-1, GRID * GRID, WIDTH)))
        return x_BLC + self.drop_path(self.mlp(self.norm2(x_BLC)))


class PatchEmbedding(layers.Layer):
    """A dense projection of each patch plus a learned embedding of its position."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.proj = layers.Dense(WIDTH)
        self.position = layers.Embedding(GRID * GRID, WIDTH)

    def call(self, patches):
        return self.proj(patches) + self.position(ops.arange(GRID * GRID))


class PatchMerging(layers.Layer):
    """Each 2x2 group of tokens concatenated and projected to twice the width, without bias."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reduction = layers.Dense(2 * WIDTH, use_bias=False)

    def call(self, x_BLC):
        x = ops.reshape(x_BLC, (-1, GRID, GRID, WIDTH))
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        x = ops.reshape(ops.concatenate(parts, axis=-1), (-1, (GRID // 2) ** 2, 4 * WIDTH))
        return self.reduction(x)


def build_model() -> keras.Model:
    """The example's model, compiled with its optimizer, loss and metrics."""
    patches = keras.Input((GRID * GRID, PATCH_VALUES))
    x = PatchEmbedding()(patches)
    for shift in (0, SHIFT):
        x = SwinBlock(shift)(x)
    x = layers.GlobalAveragePooling1D()(PatchMerging()(x))
    model = keras.Model(patches, layers.Dense(CLASSES, activation="softmax")(x))
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(5, name="top-5-accuracy"),
        ],
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", action="store_true", help="one JSON line instead of text")
    args = parser.parse_args()
    model = build_model()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, GRID * GRID, PATCH_VALUES), dtype=np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, args.batch)]
    train = images_per_second(
        lambda: model.train_on_batch(x, y), args.batch, args.steps, args.warmup
    )
    infer = images_per_second(
        lambda: model.predict_on_batch(x), args.batch, args.steps, args.warmup
    )
    record = {
        "peer": "keras_example",
        "backend": keras.backend.backend(),
        "params": model.count_params(),
        "batch": args.batch,
        "train": train,
        "infer": infer,
    }
    if not args.json:
        print(f"the Keras example's Swin: {record['params']:,} parameters")
    report(record, args.json)


if __name__ == "__main__":
    main()
