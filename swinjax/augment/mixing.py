"""Mixup, CutMix and random erasing on the device, per image, on the normalized model inputs.

Mixing follows timm's ``Mixup`` in its per-element mode: image ``i`` is mixed with image
``B - 1 - i`` of the batch as it was before mixing (the batch reversed), with its own ``lam``:

- whether it is mixed at all: probability ``mix_prob``;
- mixup (``lam ~ Beta(mixup_alpha, mixup_alpha)``, ``x = lam x_i + (1 - lam) x_j``) or CutMix
  (a box of area ``(1 - lam)`` of the image pasted from ``x_j``, ``lam ~ Beta(cutmix_alpha,
  cutmix_alpha)``): with both on, CutMix with probability ``switch_prob``;
- CutMix's ``lam`` is then corrected to the box actually pasted (clipped at the borders):
  ``1 - lam`` is exactly the fraction of pixels taken from the partner;
- targets ``lam * smooth(y_i) + (1 - lam) * smooth(y_j)``, ``smooth`` being the label smoothing of
  ``steps.cross_entropy`` (``one_hot (1 - s) + s / K``, timm's ``mixup_target``); the metrics'
  label is the dominant one (``y_i`` where ``lam >= 0.5``).

Per element rather than timm's default per batch: every image draws its own mixing, as every
other device-side augmentation does (one ``lam`` per batch would make a whole step's gradient
ride on one draw).

Random erasing is timm's ``RandomErasing(mode="pixel")`` with its defaults: with probability
``erase_prob`` per image, up to 10 attempts at a box of area 2%..1/3 of the image and aspect
ratio 0.3..1/0.3 (log-uniform); the first that fits is filled with standard normal noise, per
pixel and channel (noise on the normalized scale, as timm, which erases after normalizing).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

ERASE_AREA = (0.02, 1.0 / 3.0)  # timm's RandomErasing min_area, max_area
ERASE_ASPECT = (0.3, 1.0 / 0.3)  # min_aspect, max_aspect
ERASE_ATTEMPTS = 10


def smooth_one_hot(labels_B: jax.Array, num_classes: int, smoothing: jax.Array) -> jax.Array:
    return optax.smooth_labels(jax.nn.one_hot(labels_B, num_classes), smoothing)


def soft_cross_entropy(logits_BK: jax.Array, targets_BK: jax.Array) -> jax.Array:
    """Per-example cross-entropy against soft targets (rows summing to 1)."""
    return optax.softmax_cross_entropy(logits_BK.astype(jnp.float32), targets_BK)


def cutmix_boxes(
    key: jax.Array, lam_B: jax.Array, size: tuple[int, int]
) -> tuple[jax.Array, jax.Array]:
    """timm's ``rand_bbox`` per image: a box of ``sqrt(1 - lam)`` of each side, centred at a
    uniform pixel, clipped to the image. Returns ``(mask_BHW, corrected lam_B)``: True inside
    the box, and ``1 - box area / image area``."""
    H, W = size
    B = lam_B.shape[0]
    ratio_B = jnp.sqrt(jnp.clip(1.0 - lam_B, 0.0, 1.0))
    half_h = jnp.floor(H * ratio_B).astype(jnp.int32) // 2
    half_w = jnp.floor(W * ratio_B).astype(jnp.int32) // 2
    cy_key, cx_key = jax.random.split(key)
    cy = jax.random.randint(cy_key, (B,), 0, H)
    cx = jax.random.randint(cx_key, (B,), 0, W)
    top, bottom = jnp.clip(cy - half_h, 0, H), jnp.clip(cy + half_h, 0, H)
    left, right = jnp.clip(cx - half_w, 0, W), jnp.clip(cx + half_w, 0, W)
    rows, cols = jnp.arange(H)[None, :, None], jnp.arange(W)[None, None, :]
    mask_BHW = (
        (rows >= top[:, None, None])
        & (rows < bottom[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < right[:, None, None])
    )
    area_B = ((bottom - top) * (right - left)).astype(jnp.float32)
    return mask_BHW, 1.0 - area_B / (H * W)


def mix(
    key: jax.Array,
    x_BHWC: jax.Array,
    labels_B: jax.Array,
    num_classes: int,
    smoothing: jax.Array,
    hparams: dict[str, jax.Array],
    *,
    mixup: bool,
    cutmix: bool,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Mixup and/or CutMix (``mixup``, ``cutmix``: static) per image, as the module docstring
    says; ``hparams`` holds ``mixup_alpha``, ``cutmix_alpha``, ``mix_switch_prob`` and
    ``mix_prob`` (those of the modes on). Returns ``(x_BHWC, targets_BK, dominant_B, lam_B)``."""
    if not (mixup or cutmix):
        raise ValueError("mix: turn on mixup, cutmix or both")
    B, H, W, _ = x_BHWC.shape
    keys = jax.random.split(key, 5)
    ones_B = jnp.ones((B,), jnp.float32)
    lam_B, use_cut_B, mask_BHW = ones_B, jnp.zeros((B,), bool), jnp.zeros((B, H, W), bool)
    if mixup:
        alpha = hparams["mixup_alpha"]
        lam_B = jax.random.beta(keys[0], alpha, alpha, (B,), jnp.float32)
    if cutmix:
        alpha = hparams["cutmix_alpha"]
        mask_BHW, cut_lam_B = cutmix_boxes(
            keys[2], jax.random.beta(keys[1], alpha, alpha, (B,), jnp.float32), (H, W)
        )
        use_cut_B = jnp.ones((B,), bool)
        if mixup:
            use_cut_B = jax.random.uniform(keys[3], (B,)) < hparams["mix_switch_prob"]
        lam_B = jnp.where(use_cut_B, cut_lam_B, lam_B)
    applied_B = jax.random.uniform(keys[4], (B,)) < hparams["mix_prob"]
    lam_B = jnp.where(applied_B, lam_B, ones_B)
    partner = x_BHWC[::-1]
    lam = lam_B[:, None, None, None].astype(x_BHWC.dtype)
    pasted = jnp.where(mask_BHW[..., None], partner, x_BHWC)
    blended = lam * x_BHWC + (1 - lam) * partner
    mixed = jnp.where(use_cut_B[:, None, None, None], pasted, blended)
    x_BHWC = jnp.where(applied_B[:, None, None, None], mixed, x_BHWC)
    own = smooth_one_hot(labels_B, num_classes, smoothing)
    targets_BK = lam_B[:, None] * own + (1.0 - lam_B[:, None]) * own[::-1]
    dominant_B = jnp.where(lam_B >= 0.5, labels_B, labels_B[::-1])
    return x_BHWC, targets_BK, dominant_B, lam_B


def erase_boxes(key: jax.Array, B: int, size: tuple[int, int], prob: jax.Array) -> jax.Array:
    """``[B, H, W]`` True where timm's RandomErasing erases (see the module docstring)."""
    H, W = size
    keys = jax.random.split(key, 5)
    A = ERASE_ATTEMPTS
    area_BA = jax.random.uniform(keys[0], (B, A), minval=ERASE_AREA[0], maxval=ERASE_AREA[1])
    log_lo, log_hi = math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])
    aspect_BA = jnp.exp(jax.random.uniform(keys[1], (B, A), minval=log_lo, maxval=log_hi))
    height_BA = jnp.round(jnp.sqrt(area_BA * H * W * aspect_BA)).astype(jnp.int32)
    width_BA = jnp.round(jnp.sqrt(area_BA * H * W / aspect_BA)).astype(jnp.int32)
    fits_BA = (height_BA < H) & (width_BA < W)
    first_B1 = jnp.argmax(fits_BA, axis=1)[:, None]
    height_B = jnp.take_along_axis(height_BA, first_B1, axis=1)[:, 0]
    width_B = jnp.take_along_axis(width_BA, first_B1, axis=1)[:, 0]
    top = jnp.floor(jax.random.uniform(keys[2], (B,)) * (H - height_B + 1)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(keys[3], (B,)) * (W - width_B + 1)).astype(jnp.int32)
    erase_B = (jax.random.uniform(keys[4], (B,)) < prob) & jnp.any(fits_BA, axis=1)
    rows, cols = jnp.arange(H)[None, :, None], jnp.arange(W)[None, None, :]
    inside = (
        (rows >= top[:, None, None])
        & (rows < (top + height_B)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + width_B)[:, None, None])
    )
    return inside & erase_B[:, None, None]


def random_erase(key: jax.Array, x_BHWC: jax.Array, prob: jax.Array) -> jax.Array:
    """timm's RandomErasing, 'pixel' mode, per image with probability ``prob`` (an array)."""
    B, H, W, C = x_BHWC.shape
    box_key, noise_key = jax.random.split(key)
    mask_BHW = erase_boxes(box_key, B, (H, W), prob)
    noise = jax.random.normal(noise_key, x_BHWC.shape, x_BHWC.dtype)
    return jnp.where(mask_BHW[..., None], noise, x_BHWC)
