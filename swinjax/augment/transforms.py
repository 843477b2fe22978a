"""Device-side augmentation: pure, jittable functions run inside the jitted train step.

The host ships plain uint8 batches; the random draws come from the step's key, so a resumed run
augments exactly as an uninterrupted one. Every argument that selects code (``mode``,
``padding``, ``mean``/``std``) is a Python value checked before tracing, never inside it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from swinjax.errors import ConfigError

# "crop_flip": random crop after zero padding + horizontal flip (the CIFAR standard).
# "seed_exact": the Keras seed example, whose full-size RandomCrop is a no-op: flip only.
# "none": images unchanged.
MODES = ("crop_flip", "flip", "seed_exact", "none")  # "flip": as seed_exact, for any data
RESIZE_METHODS = ("bilinear", "bicubic")
# Per-channel (mean, std) on the [0, 1] scale, for config.normalize: "imagenet", or "dataset"
# (the training statistics of the named dataset).
NORMALIZATION = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}
NORMALIZE_MODES = ("", "imagenet", "dataset")


def _check_images(images_BHWC: jax.Array) -> None:
    if images_BHWC.ndim != 4:
        raise ValueError(f"expected images of shape [B, H, W, C], got {images_BHWC.shape}")


def validate_mode(mode: str, padding: int = 0) -> None:
    """Raises ValueError for an unknown ``mode`` or a negative / non-integer ``padding``."""
    if mode not in MODES:
        raise ConfigError(f"augment mode {mode!r} is not one of {MODES}")
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ConfigError(f"crop padding must be a Python int >= 0, got {padding!r}")


def random_flip(key: jax.Array, images_BHWC: jax.Array) -> jax.Array:
    """Each image mirrored left-right independently with probability 1/2."""
    _check_images(images_BHWC)
    flip_B = jax.random.bernoulli(key, 0.5, (images_BHWC.shape[0],))
    return jnp.where(flip_B[:, None, None, None], images_BHWC[:, :, ::-1], images_BHWC)


def random_crop(key: jax.Array, images_BHWC: jax.Array, padding: int = 4) -> jax.Array:
    """Each image zero-padded by ``padding`` pixels on every side, then cropped back to its size
    at an independent uniform offset in [0, 2 * padding] along each axis."""
    _check_images(images_BHWC)
    validate_mode("crop_flip", padding)
    if padding == 0:
        return images_BHWC
    B, H, W, C = images_BHWC.shape
    p = int(padding)
    padded_BHWC = jnp.pad(images_BHWC, ((0, 0), (p, p), (p, p), (0, 0)))
    offsets_B2 = jax.random.randint(key, (B, 2), 0, 2 * p + 1)

    def crop(image_HWC: jax.Array, offset_2: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image_HWC, (offset_2[0], offset_2[1], 0), (H, W, C))

    return jax.vmap(crop)(padded_BHWC, offsets_B2)


def random_crop_flip(key: jax.Array, images_BHWC: jax.Array, padding: int = 4) -> jax.Array:
    """:func:`random_crop` then :func:`random_flip`, with independent keys; shape and dtype kept
    (uint8 or float inputs alike)."""
    crop_key, flip_key = jax.random.split(key)
    return random_flip(flip_key, random_crop(crop_key, images_BHWC, padding))


def augment(key: jax.Array, images_BHWC: jax.Array, mode: str, padding: int = 4) -> jax.Array:
    """Dispatches on ``mode`` (one of :data:`MODES`, fixed at trace time); shape and dtype kept.

    ``padding`` is used by ``crop_flip`` only.
    """
    validate_mode(mode, padding)
    _check_images(images_BHWC)
    if mode == "crop_flip":
        return random_crop_flip(key, images_BHWC, padding)
    if mode in ("flip", "seed_exact"):
        return random_flip(key, images_BHWC)
    return images_BHWC


def normalize(
    images_BHWC: jax.Array,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> jax.Array:
    """Images as float32: uint8 scaled to [0, 1] (the seed's ``x / 255``), float inputs taken as
    already in [0, 1]; then, when ``mean`` and ``std`` (one value per channel, on the [0, 1]
    scale) are given, standardised per channel: ``(x - mean) / std``."""
    x = images_BHWC.astype(jnp.float32)
    if images_BHWC.dtype == jnp.uint8:
        x = x / 255.0
    if mean is None and std is None:
        return x
    channels = images_BHWC.shape[-1]
    if mean is None or std is None or not len(mean) == len(std) == channels:
        raise ConfigError(
            f"normalize needs both mean and std, one value per channel ({channels}); "
            f"got mean={mean}, std={std}"
        )
    if any(float(s) <= 0 for s in std):
        raise ConfigError(f"normalize: every std must be > 0, got {std}")
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def normalization(
    mode: str, dataset: str, mean: Sequence[float], std: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) to standardise with: ``mode`` "" takes ``mean``/``std`` as given (empty:
    none, images scaled to [0, 1] only, as the seed), "imagenet" ImageNet's, "dataset" the
    training statistics of ``dataset`` (:data:`NORMALIZATION`)."""
    if mode not in NORMALIZE_MODES:
        raise ConfigError(f"config.normalize={mode!r}: use one of {NORMALIZE_MODES}")
    if mode and (mean or std):
        raise ConfigError(f"config.normalize={mode!r} and config.mean/std both set; keep one")
    if mode == "dataset":
        name = dataset.split(":")[0]
        if name not in NORMALIZATION:
            raise ConfigError(
                f"config.normalize='dataset': no statistics known for {dataset!r} (known: "
                f"{sorted(NORMALIZATION)}); set --config.normalize=imagenet, or config.mean "
                "and config.std"
            )
        mode = name
    mean, std = NORMALIZATION[mode] if mode else (tuple(mean), tuple(std))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def resize(x_BHWC: jax.Array, size: tuple[int, int], method: str = "bilinear") -> jax.Array:
    """Float images resized to ``size`` (H, W) with ``jax.image.resize`` (antialiased when
    shrinking); images already of that size are returned as they are."""
    if method not in RESIZE_METHODS:
        raise ConfigError(f"resize method {method!r} is not one of {RESIZE_METHODS}")
    B, H, W, C = x_BHWC.shape
    if (H, W) == tuple(size):
        return x_BHWC
    return jax.image.resize(x_BHWC, (B, *size, C), method=method, antialias=True)
