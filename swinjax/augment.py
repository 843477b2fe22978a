"""Device-side augmentation: pure, jittable functions run inside ``train_step``.

Keeping augmentation on the device means the host only ships uint8 batches, and the random draws
come from the step's key, so a resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

# "crop_flip": random crop after zero padding + horizontal flip (the CIFAR standard).
# "seed_exact": the Keras example's pipeline, whose full-size RandomCrop is a no-op: flip only.
MODES = ("crop_flip", "seed_exact", "none")


def random_flip(key: jax.Array, images_BHWC: jax.Array) -> jax.Array:
    """Each image mirrored left-right with probability 1/2."""
    flip_B = jax.random.bernoulli(key, 0.5, (images_BHWC.shape[0],))
    return jnp.where(flip_B[:, None, None, None], images_BHWC[:, :, ::-1], images_BHWC)


def random_crop(key: jax.Array, images_BHWC: jax.Array, padding: int) -> jax.Array:
    """Each image zero-padded by ``padding`` on every side, then cropped back at a random offset."""
    if padding == 0:
        return images_BHWC
    B, H, W, C = images_BHWC.shape
    padded = jnp.pad(images_BHWC, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets_B2 = jax.random.randint(key, (B, 2), 0, 2 * padding + 1)

    def crop(img_HWC: jax.Array, off_2: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(img_HWC, (off_2[0], off_2[1], 0), (H, W, C))

    return jax.vmap(crop)(padded, offsets_B2)


def random_crop_flip(key: jax.Array, images_BHWC: jax.Array, padding: int = 4) -> jax.Array:
    crop_key, flip_key = jax.random.split(key)
    return random_flip(flip_key, random_crop(crop_key, images_BHWC, padding))


def augment(key: jax.Array, images_BHWC: jax.Array, mode: str, padding: int = 4) -> jax.Array:
    """Dispatch on ``mode`` (a Python string, fixed at trace time); shape and dtype kept."""
    if mode == "crop_flip":
        return random_crop_flip(key, images_BHWC, padding)
    if mode == "seed_exact":
        return random_flip(key, images_BHWC)
    if mode == "none":
        return images_BHWC
    raise ValueError(f"augment mode {mode!r} is not one of {MODES}")


def normalize(
    images_BHWC: jax.Array,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> jax.Array:
    """uint8 images to float32 in [0, 1] (the seed's scaling); then per-channel standardised
    when ``mean`` and ``std`` are given. Float inputs are taken as already in [0, 1]."""
    x = images_BHWC.astype(jnp.float32)
    if images_BHWC.dtype == jnp.uint8:
        x = x / 255.0
    if mean is not None or std is not None:
        if mean is None or std is None or len(mean) != len(std):
            raise ValueError("normalize needs both mean and std, one value per channel")
        x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return x
