"""A config's splits: which pipeline reads them (memory or stream), class subsets, and the
batches every kind of split yields under one contract (:func:`train_batches`,
:func:`eval_batches`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from swinjax.data import in_memory, sources
from swinjax.data.in_memory import Split, frozen_split, load_tfds_split
from swinjax.data.preprocess import HostPreprocess
from swinjax.data.sources import SYNTHETIC, split_ranges
from swinjax.data.synthetic import synthetic_split
from swinjax.errors import ConfigError


def clear_cache() -> None:
    """Forgets every split read and cached in this process (tfds and synthetic)."""
    in_memory.clear_cache()
    synthetic_split.cache_clear()


def load_split(
    config: ml_collections.ConfigDict, spec: str, image_size: tuple[int, int] | None = None
) -> Split | Any:
    """The split ``spec`` (a tfds split string such as ``train[:90%]``) of ``config.dataset``,
    in the pipeline ``config.input_pipeline`` asks for (:func:`choose_pipeline`), restricted to
    ``config.classes`` where set (:func:`select_classes`). ``image_size``: the model's input
    (H, W), which images of varying size are cropped and resized to on the host (streaming);
    images of one size are kept as they are (the device resizes them)."""
    split = _load_split(config, spec, image_size)
    classes = parse_classes(config.classes)
    if not classes:
        return split
    if not isinstance(split, Split):
        raise ConfigError(
            "config.classes needs the memory pipeline (a streamed split's class counts are not "
            "known before reading it): set --config.input_pipeline=memory"
        )
    return select_classes(split, classes)


def parse_classes(classes: str) -> tuple[int, ...]:
    """``"5,6,7"`` -> ``(5, 6, 7)``; ``""`` -> ``()``. ValueError for anything else."""
    try:
        parsed = tuple(int(c) for c in str(classes).replace(" ", "").split(",") if c != "")
    except ValueError:
        raise ConfigError(
            f"config.classes={classes!r}: give class indices separated by commas, e.g. '5,6,7'"
        ) from None
    if len(set(parsed)) != len(parsed) or any(c < 0 for c in parsed):
        raise ConfigError(f"config.classes={classes!r}: indices must be >= 0 and distinct")
    return parsed


def select_classes(split: Split, classes: tuple[int, ...]) -> Split:
    """The examples of ``classes`` only, labels renumbered 0..k-1 in the order given, class
    names kept (``classes=(5, 9)``: label 5 -> 0, 9 -> 1)."""
    bad = [c for c in classes if c >= split.num_classes]
    if bad:
        raise ConfigError(
            f"config.classes: {bad} out of range; {split.name} has {split.num_classes} classes"
        )
    new_label = np.full(split.num_classes, -1, np.int32)
    new_label[list(classes)] = np.arange(len(classes), dtype=np.int32)
    keep_E = new_label[split.labels_E] >= 0
    names = tuple(split.class_names[c] for c in classes) if split.class_names else ()
    return frozen_split(
        split.images_EHWC[keep_E],
        new_label[split.labels_E[keep_E]],
        f"{split.name}{{classes {','.join(map(str, classes))}}}",
        len(classes),
        names,
    )


def _load_split(
    config: ml_collections.ConfigDict, spec: str, image_size: tuple[int, int] | None
) -> Split | Any:
    if config.dataset == SYNTHETIC:
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
    builder = sources.open_builder(config.dataset, config.data_dir, config.download)
    if choose_pipeline(config, builder, spec) == "memory":
        return load_tfds_split(config.dataset, config.data_dir, spec, builder=builder)
    from swinjax.data import stream  # imports TensorFlow

    fixed, _ = sources.image_features(builder, config.dataset)
    return stream.open_split(
        builder,
        spec,
        name=config.dataset,
        num_shards=jax.device_count(),
        host_preprocess=None if fixed else host_preprocess(config, spec, image_size),
        shuffle_buffer=config.shuffle_buffer,
    )


def choose_pipeline(config: ml_collections.ConfigDict, builder: Any, spec: str) -> str:
    """``"memory"`` or ``"stream"``: as configured, or for ``auto`` memory when the images have
    one size and ``spec`` decoded fits in ``config.memory_budget_gb``."""
    fixed, channels = sources.image_features(builder, config.dataset)
    if config.input_pipeline == "memory" and fixed is None:
        raise ConfigError(
            f"config.input_pipeline='memory' needs images of one size; {config.dataset!r} has "
            "images of varying size: use 'stream' (or 'auto')"
        )
    if config.input_pipeline != "auto" or sources.tfds_is_mocked():
        return "memory" if config.input_pipeline in ("auto", "memory") else "stream"
    if fixed is None or config.dataset.startswith(sources.IMAGEFOLDER):
        return "stream"
    sizes = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    examples = sum(b - a for _, a, b in split_ranges(config.dataset, spec, sizes))
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


def load_splits(
    config: ml_collections.ConfigDict, image_size: tuple[int, int] | None = None
) -> dict[str, Split]:
    """``train`` always; ``val`` and ``test`` where their split strings are not empty."""
    splits = {"train": load_split(config, config.train_split, image_size)}
    for key, spec in (("val", config.get("val_split")), ("test", config.get("test_split"))):
        if spec:
            splits[key] = load_split(config, spec, image_size)
    return splits


# ----------------------------------------------------------------------------------- tfds


def train_batches(
    split: Any,
    batch_size: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Shuffled full batches ``{"image": uint8 [B,H,W,C], "label": int32 [B]}`` of ``epoch``,
    from batch ``start_step`` on (resume); the last partial batch is dropped. ``batch_size`` is
    the global batch; with ``process_count`` > 1 (multi-host) each process gets only its rows of
    every batch: the processes' blocks are disjoint and together make up the global batch.

    The split yields them itself (:func:`swinjax.data.in_memory.train_batches` for an in-memory
    split, :meth:`swinjax.data.stream.StreamSplit.train_batches` for a streamed one), under this
    contract.
    """
    yield from split.train_batches(
        batch_size,
        seed,
        epoch,
        start_step,
        process_index=process_index,
        process_count=process_count,
    )


def eval_batches(
    split: Any, batch_size: int, *, process_index: int = 0, process_count: int = 1
) -> Iterator[dict[str, np.ndarray]]:
    """Every example exactly once, in order, as ``{"image", "label", "mask": float32 [B]}``:
    all batches of ``batch_size`` rows (one compiled shape), the last padded with zero images
    and label 0 (``mask`` 0.0); with ``process_count`` > 1 each process gets its rows of every
    (padded) global batch, and every process yields the same number of batches. The split yields
    them itself (:func:`swinjax.data.in_memory.eval_batches`, or the streamed split's own).
    """
    yield from split.eval_batches(
        batch_size, process_index=process_index, process_count=process_count
    )
