"""Image files to model inputs, as the run's evaluation prepares its images: decoded by the
pipeline's decoder (``tf.io.decode_image``: JPEG, PNG, GIF's first frame, BMP; grayscale and
RGBA brought to the model's channels), then the run's eval view (``data.preprocess.center_view``:
resize, center crop). A run that read images of one size takes those of the model's input size
as they are, as its evaluation did; any other size gets the eval view.

    for item in prepare_images(paths, view=ImageView.of(model)):
        item.path, item.image_HWC (uint8, None where unreadable), item.error
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from swinjax.data.image_files import image_problem
from swinjax.data.preprocess import HostPreprocess, center_view, decode
from swinjax.training.inference import InferenceModel


@dataclasses.dataclass(frozen=True)
class ImageView:
    """How a file becomes the model's input."""

    image_shape: tuple[int, int, int]  # (H, W, C) of the images the run's evaluation fed
    host_preprocess: HostPreprocess  # the eval view, to that size
    always_crop: bool  # False: images of that size are taken as they are

    @classmethod
    def of(cls, model: InferenceModel) -> ImageView:
        """The view of a restored model's run."""
        return cls(
            image_shape=model.image_shape,
            host_preprocess=model.host_preprocess,
            always_crop=model.always_crop,
        )


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """One file: its model input (uint8 ``[H, W, C]``), or why it has none."""

    path: str
    image_HWC: np.ndarray | None
    error: str | None = None


def prepare_image(path: str, view: ImageView) -> PreparedImage:
    """``path`` decoded and brought to ``view``; a file that does not decode gets its reason."""
    import tensorflow as tf

    try:
        encoded = Path(path).read_bytes()
        decoded_HWC = decode(encoded, view.image_shape[-1])
    except (OSError, tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        reason = image_problem(path) or str(e).splitlines()[0]
        return PreparedImage(path=path, image_HWC=None, error=reason)
    if view.always_crop or tuple(decoded_HWC.shape) != view.image_shape:
        decoded_HWC = center_view(decoded_HWC, view.host_preprocess)
    return PreparedImage(path=path, image_HWC=np.asarray(decoded_HWC, np.uint8))


def prepare_images(
    paths: Sequence[str | os.PathLike],
    view: ImageView,
    *,
    workers: int | None = None,
    chunk: int = 256,
) -> Iterator[PreparedImage]:
    """:func:`prepare_image` of every path, in order, decoded by a thread pool (TensorFlow's
    decoders release the GIL) ``chunk`` files at a time, so memory holds one chunk."""
    paths = [str(p) for p in paths]
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), chunk):
            part = paths[start : start + chunk]
            yield from pool.map(prepare_image, part, [view] * len(part))
