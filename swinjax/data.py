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

import collections
import dataclasses
import functools
import queue
import threading
import types
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from swinjax import parallel, sources
from swinjax.sources import (  # noqa: F401  (re-exported: data.* is the data API)
    SYNTHETIC,
    DatasetNotFoundError,
    InvalidSplitError,
    UnknownDatasetError,
    resolve_data_dir,
)

_CACHE_SIZE = 8


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split in host memory. The arrays are read-only (they are shared through the cache)."""

    images_EHWC: np.ndarray  # uint8
    labels_E: np.ndarray  # int32 in [0, num_classes)
    name: str  # "dataset:split", e.g. "cifar100:train[:90%]"
    num_classes: int
    class_names: tuple[str, ...] = ()

    @property
    def num_examples(self) -> int:
        return int(self.labels_E.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        h, w, c = self.images_EHWC.shape[1:]
        return int(h), int(w), int(c)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full training batches per epoch (the last partial batch is dropped)."""
        return steps_per_epoch(self.num_examples, batch_size)


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


_tfds_cache: collections.OrderedDict[tuple[str, str], Split] = collections.OrderedDict()


def clear_cache() -> None:
    """Forgets every cached split (tfds and synthetic)."""
    _tfds_cache.clear()
    synthetic_split.cache_clear()


def _absolute_ranges(name: str, spec: str, sizes: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """``spec`` as (split, start, stop) ranges, by tfds' own slicing arithmetic."""
    import tensorflow_datasets as tfds

    infos = {k: types.SimpleNamespace(num_examples=n, shard_lengths=[n]) for k, n in sizes.items()}
    try:
        instructions = tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos)
    except (ValueError, AssertionError, KeyError) as e:
        raise InvalidSplitError(
            f"split {spec!r} of {name!r} is not valid: {str(e).strip()}. The dataset's splits "
            f"are {sorted(sizes)}; slice them like 'train[:90%]', 'train[90%:]' or 'test[:1000]'"
        ) from None
    return [
        (i.splitname, i.from_ or 0, sizes[i.splitname] if i.to is None else i.to)
        for i in instructions
    ]


def _read_numpy(builder: Any, spec: str) -> tuple[np.ndarray, np.ndarray]:
    """All of ``spec`` as (images uint8, labels), in file order."""
    import tensorflow_datasets as tfds

    parts = list(tfds.as_numpy(builder.as_dataset(split=spec, shuffle_files=False).batch(8192)))
    empty = np.zeros((0, *builder.info.features["image"].shape), np.uint8)
    images = np.concatenate([empty, *(p["image"] for p in parts)])
    labels = np.concatenate([np.zeros((0,), np.int64), *(p["label"] for p in parts)])
    return images, labels


def load_tfds_split(
    name: str, data_dir: str | None, spec: str, *, download: bool = False, builder: Any = None
) -> Split:
    """Split ``spec`` of tfds dataset ``name`` as uint8 arrays; cached per (dataset dir, spec).

    Raises :class:`UnknownDatasetError`, :class:`DatasetNotFoundError` (not prepared in
    ``data_dir`` and not downloadable) or :class:`InvalidSplitError` before reading anything.
    Splits whose sizes the metadata does not record (e.g. under ``tfds.testing.mock_data``) are
    read whole and sliced here with tfds' slicing arithmetic, so ``train[:90%]`` and
    ``train[90%:]`` always partition.
    """
    builder = builder or sources.open_builder(name, data_dir, download)
    fixed, _ = sources.image_features(builder, name)
    if fixed is None:
        raise ValueError(
            f"dataset {name!r} has images of varying size: the memory pipeline needs one size; "
            "use --config.input_pipeline=stream (or auto)"
        )
    mocked = sources.tfds_is_mocked()
    key = (str(builder.data_dir), spec)
    if not mocked and key in _tfds_cache:
        _tfds_cache.move_to_end(key)
        return _tfds_cache[key]
    sizes = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    if sizes:
        ranges = _absolute_ranges(name, spec, sizes)  # validates spec before reading
        images, labels = _read_numpy(builder, spec)
        if len(labels) != sum(b - a for _, a, b in ranges):
            raise RuntimeError(f"read {len(labels)} examples of {name}:{spec}, expected {ranges}")
    else:  # sizes unknown: read each named split whole, then slice
        names = dict.fromkeys(part.split("[")[0].strip() for part in spec.split("+"))
        try:
            base = {s: _read_numpy(builder, s) for s in names}
        except (ValueError, KeyError) as e:
            raise InvalidSplitError(f"split {spec!r} of {name!r} is not valid: {e}") from None
        sizes = {s: len(lab) for s, (_, lab) in base.items()}
        ranges = _absolute_ranges(name, spec, sizes)
        images = np.concatenate([base[s][0][a:b] for s, a, b in ranges])
        labels = np.concatenate([base[s][1][a:b] for s, a, b in ranges])
    if len(labels) == 0:
        raise InvalidSplitError(f"split {spec!r} of {name!r} is empty")
    label_feature = builder.info.features["label"]
    split = _frozen_split(
        images.astype(np.uint8, copy=False),
        labels.astype(np.int32),
        f"{name}:{spec}",
        int(label_feature.num_classes),
        tuple(getattr(label_feature, "names", None) or ()),
    )
    if not mocked:
        _tfds_cache[key] = split
        while len(_tfds_cache) > _CACHE_SIZE:
            _tfds_cache.popitem(last=False)
    return split


def _frozen_split(images: np.ndarray, labels: np.ndarray, *args: Any) -> Split:
    images.setflags(write=False)
    labels.setflags(write=False)
    return Split(images, labels, *args)


# ------------------------------------------------------------------------------ synthetic


@functools.lru_cache(maxsize=_CACHE_SIZE)
def synthetic_split(
    spec: str,
    num_classes: int = 10,
    image_size: int = 16,
    channels: int = 3,
    train_examples: int = 1200,
    test_examples: int = 300,
    seed: int = 0,
) -> Split:
    """Offline data with a learnable signal, deterministic in (seed, sizes).

    Each class has a smooth random colour template (a 4x4 grid of random colours, upsampled);
    an example is its class's template plus Gaussian noise (std 40 of 255). The splits are
    ``train`` and ``test``, sliced like tfds splits (``train[:90%]``).
    """
    if min(num_classes, image_size, channels, train_examples, test_examples) < 1:
        raise ValueError("synthetic dataset sizes must all be >= 1")
    sizes = {"train": train_examples, "test": test_examples}
    ranges = _absolute_ranges(SYNTHETIC, spec, sizes)
    rng = np.random.default_rng([seed, 7])
    cells = rng.uniform(0, 255, (num_classes, 4, 4, channels))
    rep = -(-image_size // 4)
    templates = cells.repeat(rep, 1).repeat(rep, 2)[:, :image_size, :image_size]
    images, labels = [], []
    for name, start, stop in ranges:
        rng = np.random.default_rng([seed, 0 if name == "train" else 1])
        labels_E = rng.integers(0, num_classes, sizes[name])[start:stop]
        noise = rng.normal(0, 40, (sizes[name], image_size, image_size, channels))[start:stop]
        images.append(np.clip(templates[labels_E] + noise, 0, 255).round().astype(np.uint8))
        labels.append(labels_E.astype(np.int32))
    if not sum(len(x) for x in labels):
        raise InvalidSplitError(f"split {spec!r} of {SYNTHETIC!r} is empty")
    return _frozen_split(
        np.concatenate(images),
        np.concatenate(labels),
        f"{SYNTHETIC}:{spec}",
        num_classes,
        tuple(f"class_{i}" for i in range(num_classes)),
    )


# -------------------------------------------------------------------------------- batches


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (training drops the last partial batch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return num_examples // batch_size


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of ``epoch``: a pure function of (num_examples, seed, epoch)."""
    entropy = [int(seed) % 2**64, int(epoch) % 2**64, 0x5117]  # any int seed, even negative
    return np.random.default_rng(entropy).permutation(num_examples)


def train_batches(
    split: Split,
    batch_size: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Shuffled full batches ``{"image": uint8 [B,H,W,C], "label": int32 [B]}`` of ``epoch``,
    from batch ``start_step`` on (resume); the last partial batch is dropped.

    ``batch_size`` is the global batch. With ``process_count`` > 1 (multi-host) each process
    gets only its block of ``batch_size // process_count`` rows of every batch: the processes'
    blocks are disjoint and together make up the global batch.

    A streamed split (:class:`swinjax.stream.StreamSplit`) yields its own batches under the same
    contract.
    """
    if not isinstance(split, Split):
        yield from split.train_batches(
            batch_size,
            seed,
            epoch,
            start_step,
            process_index=process_index,
            process_count=process_count,
        )
        return
    num_steps = steps_per_epoch(split.num_examples, batch_size)
    if not 0 <= start_step <= num_steps:
        raise ValueError(f"start_step {start_step} is outside the epoch's {num_steps} steps")
    rows = parallel.process_rows(batch_size, process_index, process_count)
    order_E = epoch_permutation(split.num_examples, seed, epoch)
    for step in range(start_step, num_steps):
        idx_B = order_E[step * batch_size :][rows]
        yield {"image": split.images_EHWC[idx_B], "label": split.labels_E[idx_B]}


def eval_batches(
    split: Split, batch_size: int, *, process_index: int = 0, process_count: int = 1
) -> Iterator[dict[str, np.ndarray]]:
    """Every example exactly once, in order, as ``{"image", "label", "mask": float32 [B]}``.

    All batches have ``batch_size`` rows (one compiled shape); the last is padded with zero
    images and label 0, and ``mask`` is 1.0 for real rows, 0.0 for padding. With
    ``process_count`` > 1 each process gets its block of every (padded) global batch, as in
    :func:`train_batches`; every process yields the same number of batches. A streamed split
    yields its own batches under the same contract.
    """
    if not isinstance(split, Split):
        yield from split.eval_batches(
            batch_size, process_index=process_index, process_count=process_count
        )
        return
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = parallel.process_rows(batch_size, process_index, process_count)
    local = rows.stop - rows.start
    n = split.num_examples
    for batch_start in range(0, n, batch_size):
        start = min(batch_start + rows.start, n)
        real = min(local, n - start)
        pad = local - real
        images_BHWC = split.images_EHWC[start : start + real]
        yield {
            "image": np.pad(images_BHWC, ((0, pad), (0, 0), (0, 0), (0, 0)))
            if pad
            else images_BHWC,
            "label": np.pad(split.labels_E[start : start + real], (0, pad)),
            "mask": (np.arange(local) < real).astype(np.float32),
        }


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
