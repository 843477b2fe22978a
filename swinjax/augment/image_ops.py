"""Image operations on a batch, each image with its own strength: the ops of
:mod:`swinjax.augment.autoaugment`. Pure ``jnp``, jittable, vectorised over the batch.

Images are float32 ``[B, H, W, C]`` on the 0..255 scale; per-image strengths are ``[B]`` arrays.
Every op returns the 0..255 scale, clipped; rounding to the uint8 grid is the caller's. The
semantics are PIL's (what timm's and torchvision's augmentations call): enhance ops blend with a
degenerate image (``degenerate + factor * (image - degenerate)``), posterize keeps the high bits,
solarize inverts pixels at or above a threshold, auto-contrast stretches each channel to 0..255,
equalize is PIL's histogram equalization per channel. The geometric ops are one affine warp
(bilinear, about the image centre, outside filled with :data:`FILL`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

FILL = 128.0  # timm's fill colour for pixels a geometric op brings in from outside the image
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # PIL's RGB -> L (ITU-R 601-2 luma)
_SMOOTH_3x3 = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))  # PIL's SMOOTH filter, / 13


def _per_image(v_B: jax.Array) -> jax.Array:
    """``[B]`` (or a scalar, for every image) -> broadcastable against ``[B, H, W, C]``."""
    return jnp.reshape(jnp.asarray(v_B, jnp.float32), (-1, 1, 1, 1))


def blend(x_BHWC: jax.Array, degenerate: jax.Array, factor_B: jax.Array) -> jax.Array:
    """PIL's ``ImageEnhance``: ``degenerate + factor * (x - degenerate)``, clipped to 0..255."""
    return jnp.clip(degenerate + _per_image(factor_B) * (x_BHWC - degenerate), 0.0, 255.0)


def grayscale(x_BHWC: jax.Array) -> jax.Array:
    """``[B, H, W, 1]`` luma: PIL's weights for RGB, the channel mean for other channel counts."""
    if x_BHWC.shape[-1] == 3:
        return jnp.einsum("bhwc,c->bhw", x_BHWC, jnp.asarray(_GRAY_WEIGHTS))[..., None]
    return jnp.mean(x_BHWC, axis=-1, keepdims=True)


def brightness(x_BHWC: jax.Array, factor_B: jax.Array) -> jax.Array:
    return blend(x_BHWC, jnp.zeros((), jnp.float32), factor_B)


def color(x_BHWC: jax.Array, factor_B: jax.Array) -> jax.Array:
    """Saturation: a blend with the image's grayscale (a no-op on one-channel images)."""
    return blend(x_BHWC, grayscale(x_BHWC), factor_B)


def contrast(x_BHWC: jax.Array, factor_B: jax.Array) -> jax.Array:
    """A blend with the image's mean gray level."""
    mean = jnp.mean(grayscale(x_BHWC), axis=(1, 2, 3), keepdims=True)
    return blend(x_BHWC, mean, factor_B)


def sharpness(x_BHWC: jax.Array, factor_B: jax.Array) -> jax.Array:
    """A blend with PIL's 3x3 smoothed image (the one-pixel border kept as it is)."""
    B, H, W, C = x_BHWC.shape
    if H < 3 or W < 3:
        return x_BHWC
    padded = jnp.pad(x_BHWC, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    smooth = sum(
        w * padded[:, dy : dy + H, dx : dx + W]
        for dy, row in enumerate(_SMOOTH_3x3)
        for dx, w in enumerate(row)
    )
    smooth = jnp.round(smooth / 13.0)
    rows, cols = jnp.arange(H)[:, None], jnp.arange(W)[None, :]
    interior = (rows > 0) & (rows < H - 1) & (cols > 0) & (cols < W - 1)
    degenerate = jnp.where(interior[None, :, :, None], smooth, x_BHWC)
    return blend(x_BHWC, degenerate, factor_B)


def solarize(x_BHWC: jax.Array, threshold_B: jax.Array) -> jax.Array:
    """Pixels at or above the threshold inverted (``255 - x``): 256 changes nothing, 0 all."""
    return jnp.where(x_BHWC >= _per_image(threshold_B), 255.0 - x_BHWC, x_BHWC)


def posterize(x_BHWC: jax.Array, bits_B: jax.Array) -> jax.Array:
    """The ``bits`` high bits of each (rounded) pixel kept, the others zeroed."""
    step = 2.0 ** (8.0 - _per_image(jnp.clip(bits_B, 0, 8)))
    return jnp.floor(jnp.clip(jnp.round(x_BHWC), 0.0, 255.0) / step) * step


def auto_contrast(x_BHWC: jax.Array) -> jax.Array:
    """Each channel of each image stretched linearly so that its min is 0 and its max 255
    (a constant channel is left as it is)."""
    lo = jnp.min(x_BHWC, axis=(1, 2), keepdims=True)
    hi = jnp.max(x_BHWC, axis=(1, 2), keepdims=True)
    scale = 255.0 / jnp.where(hi > lo, hi - lo, 1.0)
    return jnp.where(hi > lo, jnp.clip((x_BHWC - lo) * scale, 0.0, 255.0), x_BHWC)


def equalize(x_BHWC: jax.Array) -> jax.Array:
    """PIL's ``ImageOps.equalize`` per channel of each image: the lookup table from the
    cumulative histogram, ``step = (pixels - count of the highest level) // 256``, a channel
    with ``step == 0`` (one level) left as it is. Output on the uint8 grid."""
    B, H, W, C = x_BHWC.shape
    q_RS = jnp.clip(jnp.round(x_BHWC), 0, 255).astype(jnp.int32)
    q_RS = q_RS.transpose(0, 3, 1, 2).reshape(B * C, H * W)  # one row per (image, channel)
    hist_RL = jax.vmap(lambda v: jnp.bincount(v, length=256))(q_RS)
    top_R = jnp.take_along_axis(hist_RL, jnp.max(q_RS, axis=1, keepdims=True), axis=1)[:, 0]
    step_R = (H * W - top_R) // 256
    below_RL = jnp.cumsum(hist_RL, axis=1) - hist_RL  # pixels below each level
    lut_RL = jnp.clip((below_RL + step_R[:, None] // 2) // jnp.maximum(step_R, 1)[:, None], 0, 255)
    out_RS = jnp.where(step_R[:, None] > 0, jnp.take_along_axis(lut_RL, q_RS, axis=1), q_RS)
    return out_RS.reshape(B, C, H, W).transpose(0, 2, 3, 1).astype(jnp.float32)


def affine(x_BHWC: jax.Array, matrix_B22: jax.Array, offset_B2: jax.Array) -> jax.Array:
    """Each image resampled (bilinear) at ``source = matrix @ target + offset``, coordinates
    (row, column) relative to the image centre; points outside the image read :data:`FILL`.

    Four gathers of whole pixels (all channels) from the flattened images, one per corner of
    the source cell; an integer source position reads its pixel exactly."""
    B, H, W, C = x_BHWC.shape
    center_2 = jnp.array([(H - 1) / 2.0, (W - 1) / 2.0], jnp.float32)
    grid_HW2 = jnp.stack(jnp.meshgrid(jnp.arange(H), jnp.arange(W), indexing="ij"), -1)
    target_HW2 = grid_HW2.astype(jnp.float32) - center_2
    source_BHW2 = (
        jnp.einsum("bij,hwj->bhwi", matrix_B22, target_HW2) + offset_B2[:, None, None] + center_2
    )
    low_BHW2 = jnp.floor(source_BHW2)
    frac_BHW2 = source_BHW2 - low_BHW2
    low_BHW2 = low_BHW2.astype(jnp.int32)
    flat_BSC = x_BHWC.reshape(B, H * W, C)
    out = jnp.zeros_like(x_BHWC)
    for dy in (0, 1):
        for dx in (0, 1):
            row, col = low_BHW2[..., 0] + dy, low_BHW2[..., 1] + dx
            weight = (frac_BHW2[..., 0] if dy else 1.0 - frac_BHW2[..., 0]) * (
                frac_BHW2[..., 1] if dx else 1.0 - frac_BHW2[..., 1]
            )
            inside = (row >= 0) & (row < H) & (col >= 0) & (col < W)
            index_BS1 = (jnp.clip(row, 0, H - 1) * W + jnp.clip(col, 0, W - 1)).reshape(B, -1, 1)
            pixels = jnp.take_along_axis(flat_BSC, index_BS1, axis=1).reshape(B, H, W, C)
            out = out + weight[..., None] * jnp.where(inside[..., None], pixels, FILL)
    return out


def rotation(degrees_B: jax.Array) -> jax.Array:
    """``[B, 2, 2]`` (row, column) matrices rotating each image by its angle."""
    t = jnp.deg2rad(degrees_B)
    c, s = jnp.cos(t), jnp.sin(t)
    return jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)


def shear(factor_B: jax.Array, axis: int) -> jax.Array:
    """``[B, 2, 2]``: shear along ``axis`` (1: x, columns shift with the row; 0: y)."""
    eye = jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32), (factor_B.shape[0], 2, 2))
    return eye.at[:, axis, 1 - axis].set(factor_B)
