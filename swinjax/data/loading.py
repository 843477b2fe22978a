"""A config's splits: which pipeline reads them (``memory`` or ``stream``), class subsets, and
the host-side crops that bring images of varying size to the model's input.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections

from swinjax.data import in_memory, screening, sources, stream
from swinjax.data.classes import parse_classes
from swinjax.data.in_memory import load_tfds_split, select_classes
from swinjax.data.preprocess import HostPreprocess
from swinjax.data.sources import SYNTHETIC
from swinjax.data.split import Split
from swinjax.data.synthetic import synthetic_split
from swinjax.errors import ConfigError


def clear_cache() -> None:
    """Forgets every split read and cached in this process (tfds and synthetic), and every
    image folder's screening result."""
    in_memory.clear_cache()
    screening.clear_cache()
    synthetic_split.cache_clear()


def load_split(
    config: ml_collections.ConfigDict, spec: str, image_size: tuple[int, int] | None = None
) -> Split:
    """The split ``spec`` (a tfds split string such as ``train[:90%]``) of ``config.dataset``,
    in the pipeline ``config.input_pipeline`` asks for (:func:`choose_pipeline`), restricted to
    ``config.classes`` where set (renumbered 0..k-1 in the order given, names kept; on a
    streamed split for image folders only). ``image_size``: the model's input (H, W), which
    images of varying size are cropped and resized to on the host (streaming); images of one
    size are kept as they are (the device resizes them). An image folder's unreadable files are
    left out or fail the load, as ``config.bad_images`` says (:mod:`swinjax.data.screening`)."""
    classes = parse_classes(config.classes)
    if config.dataset == SYNTHETIC:
        split = _synthetic(config, spec)
    else:
        builder = sources.open_builder(config.dataset, config.data_dir, config.download)
        if choose_pipeline(config, builder, spec) == "stream":
            return _streamed(config, builder, spec, image_size, classes)
        split = load_tfds_split(config.dataset, config.data_dir, spec, builder=builder)
    return select_classes(split, classes) if classes else split


def load_splits(
    config: ml_collections.ConfigDict, image_size: tuple[int, int] | None = None
) -> dict[str, Split]:
    """``train`` always; ``val`` and ``test`` where their split strings are not empty."""
    splits = {"train": load_split(config, config.train_split, image_size)}
    for key, spec in (("val", config.val_split), ("test", config.test_split)):
        if spec:
            splits[key] = load_split(config, spec, image_size)
    return splits


def choose_pipeline(config: ml_collections.ConfigDict, builder: Any, spec: str) -> str:
    """``"memory"`` or ``"stream"``: as configured, or for ``auto`` memory when the images have
    one size and ``spec`` decoded fits in ``config.memory_budget_gb`` (image folders stream)."""
    if config.input_pipeline != "auto":
        return config.input_pipeline
    fixed, channels = sources.image_features(builder, config.dataset)
    if fixed is None or config.dataset.startswith(sources.IMAGEFOLDER):
        return "stream"
    sizes = sources.split_sizes(builder, config.dataset)
    examples = sum(b - a for _, a, b in sources.split_ranges(config.dataset, spec, sizes))
    decoded_gb = examples * fixed[0] * fixed[1] * channels / 2**30
    return "memory" if decoded_gb <= config.memory_budget_gb else "stream"


def host_preprocess(
    config: ml_collections.ConfigDict, spec: str, image_size: tuple[int, int] | None
) -> HostPreprocess:
    """How the stream pipeline brings images of varying size to the model's ``image_size``."""
    if image_size is None:
        raise ConfigError(
            f"{config.dataset}:{spec} has images of varying size: load it with the model's input "
            "size (data.load_split(config, spec, image_size=(H, W))) to crop and resize them"
        )
    return HostPreprocess(
        output_size=tuple(int(v) for v in image_size),
        rrc_scale=tuple(config.rrc_scale),
        rrc_ratio=tuple(config.rrc_ratio),
        eval_crop_fraction=config.eval_crop_fraction,
        resize_method=config.resize_method,
    )


def _synthetic(config: ml_collections.ConfigDict, spec: str) -> Split:
    if config.input_pipeline == "stream":
        raise ConfigError(
            "config.input_pipeline='stream' reads tfds files; "
            f"{SYNTHETIC!r} lives in memory: use 'auto' or 'memory'"
        )
    return synthetic_split(
        spec,
        num_classes=config.synthetic_num_classes,
        image_size=config.synthetic_image_size,
        channels=config.synthetic_channels,
        train_examples=config.synthetic_train_examples,
        test_examples=config.synthetic_test_examples,
        seed=config.synthetic_seed,
    )


def _streamed(
    config: ml_collections.ConfigDict,
    builder: Any,
    spec: str,
    image_size: tuple[int, int] | None,
    classes: tuple[int, ...],
) -> Split:
    fixed, _ = sources.image_features(builder, config.dataset)
    return stream.open_split(
        builder,
        spec,
        name=config.dataset,
        num_shards=jax.device_count(),
        host_preprocess=None if fixed else host_preprocess(config, spec, image_size),
        shuffle_buffer=config.shuffle_buffer,
        classes=classes,
        bad_images=config.bad_images,
    )
