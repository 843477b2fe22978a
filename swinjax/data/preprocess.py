"""Host-side image preprocessing in TensorFlow for :mod:`swinjax.data.stream` (variable-size
images).

Training: timm's ``RandomResizedCrop`` (Inception-style crop), as graph ops inside ``tf.data``
maps. Up to 10 attempts draw an area fraction uniform in ``rrc_scale`` and an aspect ratio
(width / height) log-uniform in ``rrc_ratio``; the first crop that fits, at a uniform position,
is taken, else the central crop with the aspect ratio clamped into ``rrc_ratio``. The crop is
resized to ``output_size`` and cast back to uint8 (rounded, clipped). Every random number comes
from stateless ops (Philox) seeded per example, so a crop is a pure function of its seed. JPEGs
decode only the crop window (``tf.io.decode_and_crop_jpeg``); other formats decode whole, then
slice. The random flip is not done here: the device does it (:mod:`swinjax.augment`).

Evaluation: timm's eval transform: the shorter side resized to ``floor(output /
eval_crop_fraction)`` (timm's ``scale_size``; 224 / 0.875 = 256), the longer side in proportion
(truncated, as torchvision's ``Resize``), then the central ``output_size`` crop (offsets
``round((size - crop) / 2)``, as torchvision's ``CenterCrop``). A non-square ``output_size``
resizes each side to ``floor(side / eval_crop_fraction)`` instead, as timm does.

Resizing uses ``antialias=True``: timm's transforms resize PIL images, and PIL filters over the
whole footprint of an output pixel when it shrinks, so downscaled images (most of them here: a
~400 px photo to 224) carry no aliasing. Without it TF's bilinear/bicubic sample only the 2 or 4
nearest source pixels, which aliases fine textures, a train/eval input shift that pretrained timm
weights never saw. When enlarging, antialias changes nothing.

Functions here build TF graph ops (call them inside ``Dataset.map`` or eagerly); TensorFlow is
imported when they are called, not when this module is imported.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from swinjax.errors import ConfigError

RESIZE_METHODS = ("bilinear", "bicubic")
RRC_ATTEMPTS = 10  # timm / torchvision: 10 attempts, then the central-crop fallback
PHILOX = "philox"  # stateless RNG algorithm, fixed so that crops do not depend on the device


@dataclasses.dataclass(frozen=True)
class HostPreprocess:
    """How the host turns a variable-size encoded image into an ``output_size`` uint8 image."""

    output_size: tuple[int, int]  # (H, W) of the images in the batches
    rrc_scale: tuple[float, float] = (0.08, 1.0)  # area fraction of the random-resized crop
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # its aspect ratio, width / height
    eval_crop_fraction: float = 0.875  # timm's crop_pct: center crop / resized shorter side
    resize_method: str = "bilinear"  # or "bicubic" (timm's default for Swin)

    def __post_init__(self) -> None:
        size = tuple(self.output_size)
        if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
            raise ConfigError(f"output_size must be two ints >= 1 (H, W), got {self.output_size}")
        scale = tuple(float(s) for s in self.rrc_scale)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ConfigError(
                f"rrc_scale must be (low, high) with 0 < low <= high <= 1, got {scale}"
            )
        ratio = tuple(float(r) for r in self.rrc_ratio)
        if len(ratio) != 2 or not 0.0 < ratio[0] <= ratio[1] < math.inf:
            raise ConfigError(
                f"rrc_ratio must be (low, high) width/height with 0 < low <= high, got {ratio}"
            )
        fraction = float(self.eval_crop_fraction)
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"eval_crop_fraction must be in (0, 1], got {fraction}")
        if self.resize_method not in RESIZE_METHODS:
            raise ConfigError(
                f"resize_method must be one of {RESIZE_METHODS}, got {self.resize_method!r}"
            )
        object.__setattr__(self, "output_size", size)
        object.__setattr__(self, "rrc_scale", scale)
        object.__setattr__(self, "rrc_ratio", ratio)
        object.__setattr__(self, "eval_crop_fraction", fraction)

    @property
    def eval_resize(self) -> tuple[int, int]:
        """timm's ``scale_size``: floor(output / eval_crop_fraction) per side."""
        return tuple(math.floor(s / self.eval_crop_fraction) for s in self.output_size)


def decode(encoded: Any, channels: int) -> Any:
    """Any-size JPEG/PNG/GIF/BMP bytes -> uint8 [H, W, channels] (first frame of a GIF)."""
    import tensorflow as tf

    image_HWC = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image_HWC.set_shape([None, None, channels])
    return image_HWC


def rrc_window(shape_2: Any, seed_2: Any, scale: tuple, ratio: tuple) -> Any:
    """The random-resized crop window [top, left, height, width] (int32) of an image of
    (height, width) ``shape_2``; a pure function of the stateless seed ``seed_2`` ([2] int).
    Names ending in ``_A`` hold one value per attempt (``RRC_ATTEMPTS``)."""
    import tensorflow as tf

    height, width = tf.cast(shape_2[0], tf.float32), tf.cast(shape_2[1], tf.float32)
    draws = tf.random.stateless_uniform([4, RRC_ATTEMPTS], seed_2, dtype=tf.float32, alg=PHILOX)
    u_area_A, u_ratio_A, u_top_A, u_left_A = tf.unstack(draws)
    area_A = height * width * (scale[0] + (scale[1] - scale[0]) * u_area_A)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect_A = tf.exp(log_lo + (log_hi - log_lo) * u_ratio_A)
    crop_width_A = tf.round(tf.sqrt(area_A * aspect_A))  # round half to even, as Python's round()
    crop_height_A = tf.round(tf.sqrt(area_A / aspect_A))
    fits_A = (
        (crop_width_A > 0)
        & (crop_width_A <= width)
        & (crop_height_A > 0)
        & (crop_height_A <= height)
    )
    # randint(0, height - crop height): a uniform offset, clamped against u = 1.0
    top_A = tf.minimum(tf.floor(u_top_A * (height - crop_height_A + 1)), height - crop_height_A)
    left_A = tf.minimum(tf.floor(u_left_A * (width - crop_width_A + 1)), width - crop_width_A)
    first = tf.argmax(tf.cast(fits_A, tf.int32))  # index of the first attempt that fits
    attempt = tf.stack([top_A[first], left_A[first], crop_height_A[first], crop_width_A[first]])
    return tf.cast(
        tf.where(tf.reduce_any(fits_A), attempt, _central_window(height, width, ratio)), tf.int32
    )


def _central_window(height: Any, width: Any, ratio: tuple) -> Any:
    """timm's fallback: the whole image, its aspect ratio clamped into ``ratio``, centred."""
    import tensorflow as tf

    in_ratio = width / height
    crop_width = tf.where(in_ratio > ratio[1], tf.round(height * ratio[1]), width)
    crop_height = tf.where(in_ratio < ratio[0], tf.round(width / ratio[0]), height)
    top, left = tf.floor((height - crop_height) / 2), tf.floor((width - crop_width) / 2)
    return tf.stack([top, left, crop_height, crop_width])


def resize_uint8(image_HWC: Any, size: tuple[int, int], method: str) -> Any:
    """``image_HWC`` resized to ``size`` (antialiased), rounded and clipped back to uint8."""
    import tensorflow as tf

    resized_HWC = tf.image.resize(image_HWC, size, method=method, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized_HWC), 0.0, 255.0), tf.uint8)


def train_image(encoded: Any, seed_2: Any, pre: HostPreprocess, channels: int) -> Any:
    """Encoded image -> its random-resized crop, uint8 [*output_size, channels]."""
    import tensorflow as tf

    def jpeg() -> Any:
        window = rrc_window(tf.io.extract_jpeg_shape(encoded)[:2], seed_2, *_rrc(pre))
        return tf.io.decode_and_crop_jpeg(encoded, window, channels=channels)

    def other() -> Any:
        image_HWC = decode(encoded, channels)
        window = rrc_window(tf.shape(image_HWC)[:2], seed_2, *_rrc(pre))
        top, left, crop_height, crop_width = tf.unstack(window)
        return image_HWC[top : top + crop_height, left : left + crop_width]

    crop_HWC = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    crop_HWC.set_shape([None, None, channels])
    out_HWC = resize_uint8(crop_HWC, pre.output_size, pre.resize_method)
    return tf.ensure_shape(out_HWC, [*pre.output_size, channels])


def _rrc(pre: HostPreprocess) -> tuple[tuple, tuple]:
    return pre.rrc_scale, pre.rrc_ratio


def eval_image(encoded: Any, pre: HostPreprocess, channels: int) -> Any:
    """Encoded image -> timm's eval view (resize, central crop), uint8 [*output_size, C]."""
    return center_view(decode(encoded, channels), pre)


def center_view(image_HWC: Any, pre: HostPreprocess) -> Any:
    """A decoded image -> timm's eval view: resized (shorter side to ``pre.eval_resize``, or
    each side for a non-square output), then the central ``output_size`` crop."""
    import tensorflow as tf

    shape_2 = tf.shape(image_HWC)[:2]
    out_h, out_w = pre.output_size
    scale_h, scale_w = pre.eval_resize
    if scale_h == scale_w:  # shorter side to scale, longer in proportion (truncated)
        height, width = shape_2[0], shape_2[1]
        short, long = tf.minimum(height, width), tf.maximum(height, width)
        new_long = tf.cast(
            scale_h * tf.cast(long, tf.float64) / tf.cast(short, tf.float64), tf.int32
        )
        new_h = tf.where(height <= width, scale_h, new_long)
        new_w = tf.where(height <= width, new_long, scale_w)
    else:
        new_h, new_w = tf.constant(scale_h), tf.constant(scale_w)
    resized_HWC = tf.image.resize(
        image_HWC, tf.stack([new_h, new_w]), method=pre.resize_method, antialias=True
    )
    top = tf.cast(tf.round((new_h - out_h) / 2), tf.int32)  # half to even, as Python's round()
    left = tf.cast(tf.round((new_w - out_w) / 2), tf.int32)
    crop_HWC = resized_HWC[top : top + out_h, left : left + out_w]
    out_HWC = tf.cast(tf.clip_by_value(tf.round(crop_HWC), 0.0, 255.0), tf.uint8)
    return tf.ensure_shape(out_HWC, [out_h, out_w, image_HWC.shape[-1]])
