"""Image classification data from tfds or image folders, fed to the device in batches.

Any tfds dataset with an ``image`` and a class ``label`` feature works (``cifar100``,
``cifar10``, ``mnist`` with C=1, ``imagenette``, ...), a folder of your own images
(``imagefolder:/path``, :mod:`swinjax.sources`), plus ``synthetic``, an offline dataset for demos
and tests. A tfds dataset that is not prepared is downloaded first (``config.download``).

Two pipelines with one contract (:func:`train_batches`, :func:`eval_batches`):

- ``memory`` (:class:`Split`): the split read once into uint8 arrays in host memory and cached
  in the process; the host only gathers rows. The fastest for datasets that fit (CIFAR).
- ``stream`` (:class:`swinjax.stream.StreamSplit`): tf.data over the tfds record files, for
  splits larger than memory and for images of varying size (decoded, random-resized-cropped or
  center-cropped to the model's size on the host).

``config.input_pipeline = "auto"`` picks ``memory`` when the images have one size and the split
decoded fits in ``config.memory_budget_gb``, else ``stream``. Training order is a pure function
of (seed, epoch), so a run resumed at (epoch, step) sees exactly the batches an uninterrupted one
would. Augmentation runs on the device (:mod:`swinjax.augment`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from swinjax import sources
from swinjax.memory import (  # noqa: F401  (re-exported: data.* is the data API)
    Split,
    _absolute_ranges,
    _frozen_split,
    clear_cache,
    epoch_permutation,
    load_tfds_split,
    steps_per_epoch,
    synthetic_split,
)
from swinjax.sources import (  # noqa: F401
    SYNTHETIC,
    DatasetNotFoundError,
    InvalidSplitError,
    UnknownDatasetError,
    resolve_data_dir,
)


def load_split(config: ml_collections.ConfigDict, spec: str) -> Split | Any:
    """The split ``spec`` (a tfds split string such as ``train[:90%]``) of ``config.dataset``,
    in the pipeline ``config.input_pipeline`` asks for (:func:`choose_pipeline`), restricted to
    ``config.classes`` where set (:func:`select_classes`)."""
    split = _load_split(config, spec)
    classes = parse_classes(config.classes)
    if not classes:
        return split
    if not isinstance(split, Split):
        raise ValueError(
            "config.classes needs the memory pipeline (a streamed split's class counts are not "
            "known before reading it): set --config.input_pipeline=memory"
        )
    return select_classes(split, classes)


def parse_classes(classes: str) -> tuple[int, ...]:
    """``"5,6,7"`` -> ``(5, 6, 7)``; ``""`` -> ``()``. ValueError for anything else."""
    try:
        parsed = tuple(int(c) for c in str(classes).replace(" ", "").split(",") if c != "")
    except ValueError:
        raise ValueError(
            f"config.classes={classes!r}: give class indices separated by commas, e.g. '5,6,7'"
        ) from None
    if len(set(parsed)) != len(parsed) or any(c < 0 for c in parsed):
        raise ValueError(f"config.classes={classes!r}: indices must be >= 0 and distinct")
    return parsed


def select_classes(split: Split, classes: tuple[int, ...]) -> Split:
    """The examples of ``classes`` only, labels renumbered 0..k-1 in the order given, class
    names kept (``classes=(5, 9)``: label 5 -> 0, 9 -> 1)."""
    bad = [c for c in classes if c >= split.num_classes]
    if bad:
        raise ValueError(
            f"config.classes: {bad} out of range; {split.name} has {split.num_classes} classes"
        )
    new_label = np.full(split.num_classes, -1, np.int32)
    new_label[list(classes)] = np.arange(len(classes), dtype=np.int32)
    keep_E = new_label[split.labels_E] >= 0
    names = tuple(split.class_names[c] for c in classes) if split.class_names else ()
    return _frozen_split(
        split.images_EHWC[keep_E],
        new_label[split.labels_E[keep_E]],
        f"{split.name}{{classes {','.join(map(str, classes))}}}",
        len(classes),
        names,
    )


def _load_split(config: ml_collections.ConfigDict, spec: str) -> Split | Any:
    if config.dataset == SYNTHETIC:
        if config.input_pipeline == "stream":
            raise ValueError(
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
    from swinjax import stream  # imports TensorFlow

    fixed, _ = sources.image_features(builder, config.dataset)
    return stream.open_split(
        builder,
        spec,
        name=config.dataset,
        num_shards=jax.device_count(),
        host_preprocess=None if fixed else host_preprocess(config),
        shuffle_buffer=config.shuffle_buffer,
    )


def choose_pipeline(config: ml_collections.ConfigDict, builder: Any, spec: str) -> str:
    """``"memory"`` or ``"stream"``: as configured, or for ``auto`` memory when the images have
    one size and ``spec`` decoded fits in ``config.memory_budget_gb``."""
    fixed, channels = sources.image_features(builder, config.dataset)
    if config.input_pipeline == "memory" and fixed is None:
        raise ValueError(
            f"config.input_pipeline='memory' needs images of one size; {config.dataset!r} has "
            "images of varying size: use 'stream' (or 'auto')"
        )
    if config.input_pipeline != "auto" or sources.tfds_is_mocked():
        return "memory" if config.input_pipeline in ("auto", "memory") else "stream"
    if fixed is None or config.dataset.startswith(sources.IMAGEFOLDER):
        return "stream"
    sizes = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    examples = sum(b - a for _, a, b in _absolute_ranges(config.dataset, spec, sizes))
    decoded_gb = examples * fixed[0] * fixed[1] * channels / 2**30
    return "memory" if decoded_gb <= config.memory_budget_gb else "stream"


def host_preprocess(config: ml_collections.ConfigDict) -> Any:
    """How the stream pipeline brings images of varying size to the model's input size."""
    from swinjax.model import PRESETS, SwinTransformer
    from swinjax.preprocess import HostPreprocess
    from swinjax.windows import to_pair

    size = config.model_kwargs.get("img_size") or PRESETS[config.model].get("img_size")
    return HostPreprocess(
        output_size=to_pair(size or SwinTransformer.img_size),
        rrc_scale=tuple(config.rrc_scale),
        rrc_ratio=tuple(config.rrc_ratio),
        eval_crop_fraction=config.eval_crop_fraction,
        resize_method=config.resize_method,
    )


def load_splits(config: ml_collections.ConfigDict) -> dict[str, Split]:
    """``train`` always; ``val`` and ``test`` where their split strings are not empty."""
    splits = {"train": load_split(config, config.train_split)}
    for key, spec in (("val", config.get("val_split")), ("test", config.get("test_split"))):
        if spec:
            splits[key] = load_split(config, spec)
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

    The split yields them itself (:func:`swinjax.memory.train_batches` for an in-memory split,
    :meth:`swinjax.stream.StreamSplit.train_batches` for a streamed one), under this contract.
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
    them itself (:func:`swinjax.memory.eval_batches`, or the streamed split's own).
    """
    yield from split.eval_batches(
        batch_size, process_index=process_index, process_count=process_count
    )


def prefetch_to_device(
    batches: Iterator[Any], size: int = 2, sharding: Any = None
) -> Iterator[Any]:
    """Yields ``batches`` already put on the device, ``size`` of them ahead.

    A background thread assembles the next batches and starts their transfers, so the device
    never waits on the host. ``sharding=None``: to the default device. With a sharding (e.g.
    ``parallel.batch_sharding(mesh)``, the batch axis split across the devices) each batch is
    this process's rows of a global batch, made into global arrays by
    ``jax.make_array_from_process_local_data`` (on one process: ``jax.device_put``). Order is
    kept; an exception in ``batches`` is re-raised here. Closing this generator early
    (``break``) stops the thread and closes ``batches``.
    """
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    ready: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    break
                on_device = (
                    jax.device_put(batch)
                    if sharding is None
                    else jax.make_array_from_process_local_data(sharding, batch)
                )
                ready.put((on_device, None))
                if stop.is_set():
                    break
            else:
                ready.put((end, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            if not stop.is_set():
                ready.put((end, e))
        finally:
            close = getattr(batches, "close", None)
            if stop.is_set() and close is not None:
                close()

    thread = threading.Thread(target=produce, name="prefetch_to_device", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                break
        thread.join(timeout=10)
