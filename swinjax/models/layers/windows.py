"""Window geometry of the Swin Transformer: partition/reverse, relative index, shift mask, and
Swin V2's log-spaced relative coordinates.

Everything that depends only on shapes is computed here once, in numpy, at trace time: the
relative-position index and the shifted-window attention mask are compile-time constants of the
model, never variables. Shapes are spelled in names: ``x_BHWC`` is (batch, height, width, channels),
``x_BwNC`` is (batch * windows, tokens per window, channels).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from swinjax.errors import ConfigError

Pair = tuple[int, int]

# Logit added to pairs of tokens that a shifted window joins but that are not neighbours in the
# image (timm, the official Swin and the Keras example all use -100, not -inf).
MASK_VALUE = -100.0


def to_pair(v: int | tuple[int, int] | list[int]) -> Pair:
    """An int or a length-2 sequence as an (h, w) pair of ints."""
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ConfigError(f"expected an int or a pair (h, w), got {v!r}")
    return t  # type: ignore[return-value]


def clamp_window(resolution: Pair, window: Pair, shift: Pair) -> tuple[Pair, Pair]:
    """timm's rule: where the feature map is no larger than the window, attend over all of it.

    Along each axis whose resolution is <= the window, the window becomes the resolution and the
    shift becomes 0 (a shift would only rotate the single window onto itself).
    """
    new_window = tuple(r if r <= w else w for r, w in zip(resolution, window, strict=True))
    new_shift = tuple(0 if r <= w else s for r, w, s in zip(resolution, window, shift, strict=True))
    return new_window, new_shift  # type: ignore[return-value]


def window_partition(x_BHWC: jnp.ndarray, window: Pair) -> jnp.ndarray:
    """Split (B, H, W, C) into non-overlapping windows: (B * w, wh * ww, C), the w windows of
    each image in row-major order."""
    B, H, W, C = x_BHWC.shape
    wh, ww = window
    x = x_BHWC.reshape(B, H // wh, wh, W // ww, ww, C)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(B * (H // wh) * (W // ww), wh * ww, C)


def window_reverse(x_BwNC: jnp.ndarray, window: Pair, H: int, W: int) -> jnp.ndarray:
    """Inverse of :func:`window_partition`: (B * w, wh * ww, C) -> (B, H, W, C)."""
    wh, ww = window
    C = x_BwNC.shape[-1]
    x = x_BwNC.reshape(-1, H // wh, W // ww, wh, ww, C)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


@functools.cache
def relative_position_index(window: Pair) -> np.ndarray:
    """Index into the (2wh-1)(2ww-1) bias table for every (query, key) pair of a window: (N, N).

    Token i at (yi, xi) attending to token j at (yj, xj) reads row
    (yi - yj + wh - 1) * (2ww - 1) + (xi - xj + ww - 1).
    """
    wh, ww = window
    ys, xs = np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = ys[:, None] - ys[None, :] + wh - 1
    dx = xs[:, None] - xs[None, :] + ww - 1
    index = dy * (2 * ww - 1) + dx
    index.setflags(write=False)
    return index.astype(np.int32)


@functools.cache
def shifted_window_mask(resolution: Pair, window: Pair, shift: Pair) -> np.ndarray:
    """Additive attention mask for shifted windows: (w, N, N) of 0 and ``MASK_VALUE``.

    After the cyclic shift by (-sh, -sw), windows on the bottom/right border hold tokens from
    opposite edges of the image. Each position is labelled by which of the 3 x 3 regions
    (rows [0, H-wh), [H-wh, H-sh), [H-sh, H); same for columns) it came from; two tokens of a
    window may attend to each other only if they carry the same label.
    """
    H, W = resolution
    (wh, ww), (sh, sw) = window, shift
    row_region = np.zeros(H, np.int64)
    row_region[H - wh :] = 1
    row_region[H - sh :] = 2
    col_region = np.zeros(W, np.int64)
    col_region[W - ww :] = 1
    col_region[W - sw :] = 2
    labels_HW = row_region[:, None] * 3 + col_region[None, :]
    labels_wN = np.asarray(window_partition(labels_HW[None, :, :, None], window))[..., 0]
    same = labels_wN[:, :, None] == labels_wN[:, None, :]
    mask = np.where(same, 0.0, MASK_VALUE).astype(np.float32)
    mask.setflags(write=False)
    return mask


# Swin V2's continuous position bias reads log-spaced relative coordinates: scaled to [-8, 8] by
# the (pretrained) window, then sign(x) * log2(1 + |x|) / log2(8).
LOG_COORDS_RANGE = 8.0


@functools.cache
def relative_coords_table(window: Pair, pretrained_window: Pair = (0, 0)) -> np.ndarray:
    """Swin V2's log-spaced relative coordinates of the (2wh-1)(2ww-1) offsets: (T, 2) float32,
    row ``(dy + wh - 1) * (2ww - 1) + (dx + ww - 1)`` (the rows :func:`relative_position_index`
    reads) holding the transformed (dy, dx).

    Offsets in [-(w-1), w-1] are divided by ``pretrained_window - 1`` (by ``window - 1`` where
    the pretrained window is 0; at least 1), times 8, then ``sign(x) * log2(|x| + 1) / log2(8)``
    (timm's ``relative_coords_table``, flattened).
    """
    wh, ww = window
    reference = pretrained_window if pretrained_window[0] > 0 else window
    dy = np.arange(-(wh - 1), wh, dtype=np.float64) / max(reference[0] - 1, 1)
    dx = np.arange(-(ww - 1), ww, dtype=np.float64) / max(reference[1] - 1, 1)
    grid_HW2 = np.stack(np.meshgrid(dy, dx, indexing="ij"), axis=-1) * LOG_COORDS_RANGE
    table_HW2 = np.sign(grid_HW2) * np.log2(np.abs(grid_HW2) + 1.0) / np.log2(LOG_COORDS_RANGE)
    table_T2 = table_HW2.reshape(-1, 2).astype(np.float32)
    table_T2.setflags(write=False)
    return table_T2
