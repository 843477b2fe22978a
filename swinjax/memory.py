"""In-memory splits: a tfds split (or the synthetic dataset) read once into uint8 host arrays,
cached in the process, and their batches: a global permutation per epoch, a pure function of
(seed, epoch), from which each process gathers its block of rows. The ``memory`` pipeline of
:mod:`swinjax.data`; :class:`Split` has the batch methods of :class:`swinjax.stream.StreamSplit`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import types
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from swinjax import parallel, sources
from swinjax.sources import SYNTHETIC, InvalidSplitError

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
    """
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
    :func:`train_batches`; every process yields the same number of batches.
    """
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
