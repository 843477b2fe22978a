"""RandAugment and TrivialAugment on the device: per-image random ops inside the jitted step.

One op table (:data:`OPS`, torchvision's TrivialAugmentWide / RandAugment table): identity,
auto-contrast, equalize, rotate, solarize, color, posterize, contrast, brightness, sharpness,
shear-x/y, translate-x/y (:mod:`swinjax.augment.image_ops`). Each image draws its own op, magnitude
and sign, from the step's key: a pure function of (seed, step), as every device-side augmentation.

- ``trivialaugment`` (Muller & Hutter 2021, the "wide" ranges :data:`WIDE`): one op per image,
  uniformly from the table, at a magnitude drawn uniformly from 31 levels 0/30 .. 30/30.
- ``randaugment`` (Cubuk et al. 2020, the standard ranges :data:`STANDARD`): ``num_ops`` ops per
  image, each uniformly from the table (identity included) and always applied, at magnitude
  ``M`` on timm's 0..10 scale (``M / 10`` of the range; ``rand-m9-n2``). ``M`` is an array (a
  sweep over it compiles once); ``num_ops`` is static.

Vectorised: every op of the table is computed for the whole batch and each image keeps its own
(``jnp.where``); the four geometric ops are a single affine warp with a per-image matrix. uint8
inputs stay uint8 (rounded after every op, as PIL does), float inputs on [0, 1] stay float.
Magnitudes with a direction (rotate, shear, translate, the enhance factors) take a random sign.

Either policy, like the other recipe tools, costs a few percent of a train step on the CPU
(measured: docs/performance.md, "Device-side augmentation"). TrivialAugment is the policy to
reach for first: it has no hyperparameter to tune (RandAugment has N and M) and does half
RandAugment's work. Off stays the key's default, so existing configs are unchanged.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from swinjax.augment import image_ops as ops
from swinjax.errors import ConfigError

OPS = (
    "identity",
    "auto_contrast",
    "equalize",
    "rotate",
    "solarize",
    "color",
    "posterize",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
POLICIES = ("", "randaugment", "trivialaugment")
MAGNITUDE_MAX = 10.0  # randaugment's magnitude scale, timm's (rand-m9: 9 / 10 of each range)
TRIVIAL_LEVELS = 31  # trivialaugment's magnitude levels (0 .. 30) / 30


@dataclasses.dataclass(frozen=True)
class Ranges:
    """Each op's strength at magnitude 1."""

    rotate: float  # degrees
    shear: float  # shear factor (pixels of shift per pixel across)
    translate: float  # fraction of the image's height or width
    enhance: float  # color, contrast, brightness, sharpness: factor 1 +- this
    posterize: float  # bits dropped (of 8)


# RandAugment's ranges (timm's and torchvision's at the top of the scale: 30 deg, shear 0.3,
# translate 0.45 = torchvision's 150/331 of the size, factors 0.1..1.9, 4 bits kept).
STANDARD = Ranges(rotate=30.0, shear=0.3, translate=0.45, enhance=0.9, posterize=4.0)
# TrivialAugmentWide's (torchvision): 135 deg, shear 0.99, factors 0.01..1.99, 2 bits kept; its
# translation is 32 pixels, the whole width of the 32x32 images it was tuned on: 1.0 here.
WIDE = Ranges(rotate=135.0, shear=0.99, translate=1.0, enhance=0.99, posterize=6.0)
_GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def validate_policy(policy: str, num_ops: int = 2) -> None:
    if policy not in POLICIES:
        raise ConfigError(f"config.augment_policy={policy!r}: use one of {POLICIES}")
    if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 1:
        raise ConfigError(f"config.randaug_num_ops={num_ops!r}: must be an integer >= 1")


def _is_op(op_B: jax.Array, name: str) -> jax.Array:
    return op_B == OPS.index(name)


def _affine_warps(
    op_B: jax.Array, signed_B: jax.Array, r: Ranges, size: tuple[int, int]
) -> tuple[jax.Array, jax.Array]:
    """Per image, the affine warp of its op (the identity for a non-geometric op)."""
    B = op_B.shape[0]
    matrix_B22 = jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32), (B, 2, 2))
    for name, m in (
        ("rotate", ops.rotation(signed_B * r.rotate)),
        ("shear_x", ops.shear(signed_B * r.shear, axis=1)),
        ("shear_y", ops.shear(signed_B * r.shear, axis=0)),
    ):
        matrix_B22 = jnp.where(_is_op(op_B, name)[:, None, None], m, matrix_B22)
    shift_B = signed_B * r.translate
    zero_B = jnp.zeros_like(shift_B)
    offset_B2 = jnp.zeros((B, 2), jnp.float32)
    for name, o in (
        ("translate_y", jnp.stack([shift_B * size[0], zero_B], -1)),
        ("translate_x", jnp.stack([zero_B, shift_B * size[1]], -1)),
    ):
        offset_B2 = jnp.where(_is_op(op_B, name)[:, None], o, offset_B2)
    return matrix_B22, offset_B2


def apply_ops(
    key: jax.Array, x_BHWC: jax.Array, op_B: jax.Array, magnitude_B: jax.Array, r: Ranges
) -> jax.Array:
    """Image ``i`` (float, 0..255) through op ``OPS[op_B[i]]`` at ``magnitude_B[i]`` in [0, 1]
    of the ranges ``r``, the direction a random sign drawn from ``key``."""
    B, H, W, _ = x_BHWC.shape
    sign_B = jnp.where(jax.random.bernoulli(key, 0.5, (B,)), 1.0, -1.0)
    m_B = jnp.clip(jnp.asarray(magnitude_B, jnp.float32), 0.0, 1.0)
    factor_B = 1.0 + sign_B * m_B * r.enhance
    candidates = {
        "auto_contrast": lambda: ops.auto_contrast(x_BHWC),
        "equalize": lambda: ops.equalize(x_BHWC),
        "solarize": lambda: ops.solarize(x_BHWC, 256.0 * (1.0 - m_B)),
        "color": lambda: ops.color(x_BHWC, factor_B),
        "posterize": lambda: ops.posterize(x_BHWC, 8.0 - jnp.round(m_B * r.posterize)),
        "contrast": lambda: ops.contrast(x_BHWC, factor_B),
        "brightness": lambda: ops.brightness(x_BHWC, factor_B),
        "sharpness": lambda: ops.sharpness(x_BHWC, factor_B),
    }
    out = x_BHWC
    for name, op in candidates.items():
        out = jnp.where(_is_op(op_B, name)[:, None, None, None], op(), out)
    matrix_B22, offset_B2 = _affine_warps(op_B, sign_B * m_B, r, (H, W))
    geometric_B = jnp.isin(op_B, jnp.array([OPS.index(n) for n in _GEOMETRIC]))
    warped = ops.affine(x_BHWC, matrix_B22, offset_B2)
    return jnp.where(geometric_B[:, None, None, None], warped, out)


def _apply_layers(
    key: jax.Array, x_BHWC: jax.Array, num_layers: int, draw, r: Ranges, quantize: bool
) -> jax.Array:
    """``num_layers`` rounds of :func:`apply_ops`, each image's op and magnitude from
    ``draw(key, B) -> (op_B, magnitude_B)``; rounded to the uint8 grid after each where
    ``quantize``.

    A loop (``lax.scan``) even for one layer: each layer reads a materialised input. Fused into
    its consumer, the warp's gathers ran several times slower on XLA:CPU (docs/performance.md,
    "Device-side augmentation")."""

    def layer(x: jax.Array, layer_key: jax.Array) -> tuple[jax.Array, None]:
        draw_key, sign_key = jax.random.split(layer_key)
        op_B, magnitude_B = draw(draw_key, x.shape[0])
        x = apply_ops(sign_key, x, op_B, magnitude_B, r)
        return (jnp.round(x) if quantize else x), None

    x_BHWC, _ = jax.lax.scan(layer, x_BHWC, jax.random.split(key, num_layers))
    return x_BHWC


def trivial_augment(key: jax.Array, x_BHWC: jax.Array, quantize: bool) -> jax.Array:
    """One uniformly drawn op per image at a uniformly drawn level (:data:`WIDE` ranges)."""

    def draw(k: jax.Array, B: int) -> tuple[jax.Array, jax.Array]:
        op_key, level_key = jax.random.split(k)
        level_B = jax.random.randint(level_key, (B,), 0, TRIVIAL_LEVELS)
        return jax.random.randint(op_key, (B,), 0, len(OPS)), level_B / (TRIVIAL_LEVELS - 1.0)

    return _apply_layers(key, x_BHWC, 1, draw, WIDE, quantize)


def rand_augment(
    key: jax.Array, x_BHWC: jax.Array, num_ops: int, magnitude: jax.Array, quantize: bool
) -> jax.Array:
    """``num_ops`` uniformly drawn ops per image, in turn, each at ``magnitude / 10`` of the
    :data:`STANDARD` ranges."""
    m = jnp.asarray(magnitude, jnp.float32) / MAGNITUDE_MAX

    def draw(k: jax.Array, B: int) -> tuple[jax.Array, jax.Array]:
        return jax.random.randint(k, (B,), 0, len(OPS)), jnp.broadcast_to(m, (B,))

    return _apply_layers(key, x_BHWC, num_ops, draw, STANDARD, quantize)


def apply_policy(
    key: jax.Array,
    images_BHWC: jax.Array,
    policy: str,
    num_ops: int = 2,
    magnitude: jax.Array | float = 9.0,
) -> jax.Array:
    """``policy`` (one of :data:`POLICIES`; "" returns the images) on uint8 or [0, 1] float
    images; shape and dtype kept, uint8 values on the uint8 grid."""
    validate_policy(policy, num_ops)
    if not policy:
        return images_BHWC
    quantize = images_BHWC.dtype == jnp.uint8
    x = images_BHWC.astype(jnp.float32) * (1.0 if quantize else 255.0)
    if policy == "trivialaugment":
        x = trivial_augment(key, x, quantize)
    else:
        x = rand_augment(key, x, num_ops, magnitude, quantize)
    if quantize:
        return jnp.clip(x, 0, 255).astype(jnp.uint8)
    return (x / 255.0).astype(images_BHWC.dtype)
