"""In-memory splits (:class:`InMemorySplit`, a :class:`swinjax.data.split.Split`): a tfds split
read once into uint8 host arrays, cached in the process, and their batches: a global permutation
per epoch, a pure function of (seed, epoch), from which each process gathers its block of rows.
The ``memory`` pipeline of :mod:`swinjax.data`; the synthetic dataset
(:mod:`swinjax.data.synthetic`) is an :class:`InMemorySplit` too.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from swinjax.data import sources
from swinjax.data.batching import epoch_permutation, process_rows, steps_per_epoch
from swinjax.data.classes import ClassSubset
from swinjax.data.sources import split_ranges
from swinjax.errors import ConfigError, InvalidSplitError

_CACHE_SIZE = 8


@dataclasses.dataclass(frozen=True, eq=False)
class InMemorySplit:
    """One split in host memory. The arrays are read-only (they are shared through the cache).
    Build one with :func:`frozen_split` (which freezes the arrays)."""

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
        height, width, channels = self.images_EHWC.shape[1:]
        return int(height), int(width), int(channels)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full training batches per epoch (the last partial batch is dropped)."""
        return steps_per_epoch(self.num_examples, batch_size)

    def head(self, num_examples: int) -> InMemorySplit:
        """The first ``num_examples`` examples (the split's order), e.g. a validation stand-in."""
        if not 1 <= num_examples <= self.num_examples:
            raise ConfigError(
                f"head({num_examples}) of {self.name}: take 1..{self.num_examples} examples"
            )
        n = num_examples
        return frozen_split(
            self.images_EHWC[:n],
            self.labels_E[:n],
            f"{self.name}[:{n}]",
            self.num_classes,
            self.class_names,
        )

    def train_batches(
        self,
        batch_size: int,
        seed: int,
        epoch: int,
        start_step: int = 0,
        *,
        process_index: int = 0,
        process_count: int = 1,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Shuffled full batches of ``epoch`` from batch ``start_step`` on, as
        :func:`swinjax.data.split.train_batches`: the epoch's order is a global permutation
        (:func:`epoch_permutation`), of which each process gathers its block of rows of every
        batch."""
        num_steps = steps_per_epoch(self.num_examples, batch_size)
        if not 0 <= start_step <= num_steps:
            raise ConfigError(f"start_step {start_step} is outside the epoch's {num_steps} steps")
        rows = process_rows(batch_size, process_index, process_count)
        order_E = epoch_permutation(self.num_examples, seed, epoch)
        for step in range(start_step, num_steps):
            idx_B = order_E[step * batch_size :][rows]
            yield {"image": self.images_EHWC[idx_B], "label": self.labels_E[idx_B]}

    def eval_batches(
        self, batch_size: int, *, process_index: int = 0, process_count: int = 1
    ) -> Iterator[dict[str, np.ndarray]]:
        """Every example once, in order, as :func:`swinjax.data.split.eval_batches`: each
        process gets its block of every (padded) global batch."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        rows = process_rows(batch_size, process_index, process_count)
        local = rows.stop - rows.start
        n = self.num_examples
        for batch_start in range(0, n, batch_size):
            start = min(batch_start + rows.start, n)
            real = min(local, n - start)
            pad = local - real
            images_BHWC = self.images_EHWC[start : start + real]
            yield {
                "image": np.pad(images_BHWC, ((0, pad), (0, 0), (0, 0), (0, 0)))
                if pad
                else images_BHWC,
                "label": np.pad(self.labels_E[start : start + real], (0, pad)),
                "mask": (np.arange(local) < real).astype(np.float32),
            }


_tfds_cache: collections.OrderedDict[tuple[str, str], InMemorySplit] = collections.OrderedDict()


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
) -> InMemorySplit:
    """Split ``spec`` of tfds dataset ``name`` as uint8 arrays; cached per (dataset dir, spec)
    (:func:`clear_cache` forgets them).

    Raises :class:`UnknownDatasetError`, :class:`DatasetNotFoundError` (not prepared in
    ``data_dir`` and not downloadable), :class:`InvalidSplitError` or :class:`ConfigError`
    (images of varying size) before reading anything. Splits whose sizes the metadata does not
    record are read whole and sliced here with tfds' slicing arithmetic, so ``train[:90%]`` and
    ``train[90%:]`` always partition.
    """
    builder = builder or sources.open_builder(name, data_dir, download)
    fixed, _ = sources.image_features(builder, name)
    if fixed is None:
        raise ConfigError(
            f"dataset {name!r} has images of varying size; the memory pipeline "
            "(config.input_pipeline='memory') needs images of one size: use "
            "--config.input_pipeline=stream (or auto)"
        )
    key = (str(builder.data_dir), spec)
    if key not in _tfds_cache:
        _tfds_cache[key] = _read_split(builder, name, spec)
        while len(_tfds_cache) > _CACHE_SIZE:
            _tfds_cache.popitem(last=False)
    _tfds_cache.move_to_end(key)
    return _tfds_cache[key]


def _read_split(builder: Any, name: str, spec: str) -> InMemorySplit:
    sizes = sources.split_sizes(builder, name, required=False)
    if sizes:
        ranges = split_ranges(name, spec, sizes)  # validates spec before reading
        images, labels = _read_numpy(builder, spec)
        if len(labels) != sum(b - a for _, a, b in ranges):
            raise RuntimeError(f"read {len(labels)} examples of {name}:{spec}, expected {ranges}")
    else:  # sizes unknown: read each named split whole, then slice
        try:
            whole = {s: _read_numpy(builder, s) for s in sources.split_names(spec)}
        except (ValueError, KeyError) as e:
            raise InvalidSplitError(f"split {spec!r} of {name!r} is not valid: {e}") from None
        ranges = split_ranges(name, spec, {s: len(lab) for s, (_, lab) in whole.items()})
        images = np.concatenate([whole[s][0][a:b] for s, a, b in ranges])
        labels = np.concatenate([whole[s][1][a:b] for s, a, b in ranges])
    label_feature = builder.info.features["label"]
    return frozen_split(
        images.astype(np.uint8, copy=False),
        labels.astype(np.int32),
        f"{name}:{spec}",
        int(label_feature.num_classes),
        tuple(getattr(label_feature, "names", None) or ()),
    )


def frozen_split(images: np.ndarray, labels: np.ndarray, *args: Any) -> InMemorySplit:
    """An :class:`InMemorySplit` of ``images`` and ``labels``, made read-only."""
    images.setflags(write=False)
    labels.setflags(write=False)
    return InMemorySplit(images, labels, *args)


def select_classes(split: InMemorySplit, classes: tuple[int, ...]) -> InMemorySplit:
    """The examples of ``classes`` only, labels renumbered 0..k-1 in the order given, class
    names kept (:class:`swinjax.data.classes.ClassSubset`)."""
    subset = ClassSubset(classes, split.num_classes, split.name)
    new_label_E = subset.new_label_K[split.labels_E]
    keep_E = new_label_E >= 0
    return frozen_split(
        split.images_EHWC[keep_E],
        new_label_E[keep_E],
        subset.name,
        len(classes),
        subset.class_names(split.class_names),
    )
