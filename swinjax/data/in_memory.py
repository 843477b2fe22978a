"""In-memory splits: a tfds split read once into uint8 host arrays, cached in the process, and
their batches: a global permutation per epoch, a pure function of (seed, epoch), from which each
process gathers its block of rows. The ``memory`` pipeline of :mod:`swinjax.data`;
:class:`Split` has the batch methods of :class:`swinjax.data.stream.StreamSplit`. The synthetic
dataset (:mod:`swinjax.data.synthetic`) is a :class:`Split` too.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from swinjax.data import sources
from swinjax.data.batching import epoch_permutation, process_rows, steps_per_epoch
from swinjax.data.sources import split_ranges
from swinjax.errors import ConfigError, InvalidSplitError

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

    def train_batches(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, np.ndarray]]:
        """:func:`train_batches` of this split."""
        return train_batches(self, *args, **kwargs)

    def eval_batches(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, np.ndarray]]:
        """:func:`eval_batches` of this split."""
        return eval_batches(self, *args, **kwargs)


_tfds_cache: collections.OrderedDict[tuple[str, str], Split] = collections.OrderedDict()


def clear_cache() -> None:
    """Forgets every cached tfds split."""
    _tfds_cache.clear()


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
        raise ConfigError(
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
        ranges = split_ranges(name, spec, sizes)  # validates spec before reading
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
        ranges = split_ranges(name, spec, sizes)
        images = np.concatenate([base[s][0][a:b] for s, a, b in ranges])
        labels = np.concatenate([base[s][1][a:b] for s, a, b in ranges])
    if len(labels) == 0:
        raise InvalidSplitError(f"split {spec!r} of {name!r} is empty")
    label_feature = builder.info.features["label"]
    split = frozen_split(
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


def frozen_split(images: np.ndarray, labels: np.ndarray, *args: Any) -> Split:
    images.setflags(write=False)
    labels.setflags(write=False)
    return Split(images, labels, *args)


# -------------------------------------------------------------------------------- batches


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
    """
    num_steps = steps_per_epoch(split.num_examples, batch_size)
    if not 0 <= start_step <= num_steps:
        raise ConfigError(f"start_step {start_step} is outside the epoch's {num_steps} steps")
    rows = process_rows(batch_size, process_index, process_count)
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
    :func:`train_batches`; every process yields the same number of batches.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    rows = process_rows(batch_size, process_index, process_count)
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
