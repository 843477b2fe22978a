"""Image classification data from tfds, held in host memory, fed to the device in batches.

Any tfds dataset with ``image`` and ``label`` features works (``cifar100``, ``cifar10``,
``mnist``, ``fashion_mnist``, ...), plus ``synthetic``, an offline stand-in for demos. Splits are
read once through tfds (``download=False``: a missing dataset is an error that says what to do,
never a hang on the network) into uint8 arrays; shuffling is a numpy permutation that is a pure
function of (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would.
Augmentation runs on the device (:mod:`swinjax.augment`); the host only slices arrays.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import threading
import types
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (under tfds) is chatty
import numpy as np

SYNTHETIC = "synthetic"


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not prepared in the data directory (and nothing will download it)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split in host memory: ``images`` (N, H, W, C) uint8 and ``labels`` (N,) int32."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = ()

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def default_data_config() -> ml_collections.ConfigDict:
    """Dataset keys, with the seed's splits: 90% / 10% of train, and test."""
    c = ml_collections.ConfigDict()
    c.dataset = "cifar100"
    c.data_dir = ""  # "": $TFDS_DATA_DIR, else tfds' default (~/tensorflow_datasets)
    c.train_split = "train[:90%]"
    c.val_split = "train[90%:]"  # "": no validation
    c.test_split = "test"  # "": no final test evaluation
    c.batch_size = 128
    c.eval_batch_size = 0  # 0: batch_size
    c.synthetic = ml_collections.ConfigDict(
        dict(num_classes=10, image_size=16, channels=3, train_examples=1200, test_examples=300)
    )
    return c


def resolve_data_dir(data_dir: str | None) -> str | None:
    return data_dir or os.environ.get("TFDS_DATA_DIR") or None


def load_split(config: ml_collections.ConfigDict, spec: str) -> Split:
    """The split ``spec`` (a tfds split string such as ``train[:90%]``) of ``config.dataset``."""
    if config.dataset == SYNTHETIC:
        s = config.synthetic
        return _synthetic_split(
            spec,
            s.num_classes,
            s.image_size,
            s.channels,
            s.train_examples,
            s.test_examples,
            config.seed,
        )
    return _tfds_split(config.dataset, resolve_data_dir(config.data_dir), spec)


def load_splits(config: ml_collections.ConfigDict) -> dict[str, Split]:
    """``train`` always; ``val`` and ``test`` where their split strings are not empty."""
    splits = {"train": load_split(config, config.train_split)}
    for key, spec in (("val", config.val_split), ("test", config.test_split)):
        if spec:
            splits[key] = load_split(config, spec)
    return splits


@functools.lru_cache(maxsize=16)
def _tfds_split(name: str, data_dir: str | None, spec: str) -> Split:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"config.dataset={name!r} is not a tfds dataset; use a tfds name such "
            f"as cifar100, cifar10, mnist or fashion_mnist, or {SYNTHETIC!r}"
        ) from e
    where = data_dir or "tfds' default data directory (~/tensorflow_datasets)"
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"dataset {name!r} has features {list(features)}; swinjax needs 'image' and 'label'"
        )
    try:
        ds = builder.as_dataset(split=spec, shuffle_files=False)
    except AssertionError as e:  # tfds' way of saying the files are not there
        raise DatasetNotFoundError(
            f"dataset {name!r} is not prepared in {where} and will not be downloaded. Prepare it "
            f"where the network reaches it (`tfds build {name} --data_dir DIR`) and pass "
            "--config.data_dir=DIR (or set TFDS_DATA_DIR) pointing at that tfds directory"
        ) from e
    except (ValueError, KeyError) as e:
        known = list(builder.info.splits.keys()) if builder.info.splits else []
        raise ValueError(
            f"split {spec!r} of {name!r} is not valid ({e}); the prepared splits "
            f"are {known}, sliced like 'train[:90%]'"
        ) from e
    images, labels = [], []
    for batch in tfds.as_numpy(ds.batch(4096)):
        images.append(batch["image"])
        labels.append(batch["label"])
    if not labels:
        raise ValueError(f"split {spec!r} of {name!r} is empty")
    label_feature = features["label"]
    return Split(
        name=f"{name}:{spec}",
        images=np.concatenate(images).astype(np.uint8),
        labels=np.concatenate(labels).astype(np.int32),
        num_classes=int(label_feature.num_classes),
        class_names=tuple(getattr(label_feature, "names", ()) or ()),
    )


@functools.lru_cache(maxsize=16)
def _synthetic_split(
    spec: str, num_classes: int, size: int, channels: int, train_n: int, test_n: int, seed: int
) -> Split:
    """Offline data with a learnable signal: each class has a smooth random template; examples
    are their class's template under noise. Deterministic in (seed, split)."""
    import tensorflow_datasets as tfds

    try:
        instruction = tfds.core.ReadInstruction.from_spec(spec)
        sizes = {"train": train_n, "test": test_n}
        abs_instr = instruction.to_absolute(
            {k: types.SimpleNamespace(num_examples=n) for k, n in sizes.items()}
        )
    except (ValueError, AssertionError, KeyError) as e:
        raise ValueError(
            f"split {spec!r} is not valid for {SYNTHETIC!r} (splits: train, "
            f"test; slices like 'train[:90%]'): {e}"
        ) from e
    coarse = np.random.default_rng([seed, 7]).uniform(0, 255, (num_classes, 4, 4, channels))
    templates = coarse.repeat(-(-size // 4), 1).repeat(-(-size // 4), 2)[:, :size, :size]
    images, labels = [], []
    for part in abs_instr:
        total = train_n if part.splitname == "train" else test_n
        rng = np.random.default_rng([seed, 0 if part.splitname == "train" else 1])
        split_labels = rng.integers(0, num_classes, total)
        noise = rng.normal(0, 40, (total, size, size, channels))
        split_images = np.clip(templates[split_labels] + noise, 0, 255).astype(np.uint8)
        lo, hi = part.from_ or 0, part.to if part.to is not None else total
        images.append(split_images[lo:hi])
        labels.append(split_labels[lo:hi].astype(np.int32))
    return Split(
        name=f"{SYNTHETIC}:{spec}",
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        num_classes=num_classes,
        class_names=tuple(f"class_{i}" for i in range(num_classes)),
    )


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (training drops the last partial batch)."""
    return num_examples // batch_size


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of ``epoch``: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x5117]).permutation(num_examples)


def train_batches(
    split: Split, batch_size: int, seed: int, epoch: int, start_step: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """Shuffled full batches ``{"image": uint8 (B,H,W,C), "label": int32 (B,)}`` from
    batch ``start_step`` of ``epoch`` on."""
    order = epoch_permutation(split.num_examples, seed, epoch)
    for s in range(start_step, steps_per_epoch(split.num_examples, batch_size)):
        idx = order[s * batch_size : (s + 1) * batch_size]
        yield {"image": split.images[idx], "label": split.labels[idx]}


def eval_batches(split: Split, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Every example once, in order; the last batch is padded and ``mask`` marks real rows."""
    n = split.num_examples
    for start in range(0, n, batch_size):
        real = min(batch_size, n - start)
        pad = batch_size - real
        images, labels = split.images[start : start + real], split.labels[start : start + real]
        if pad:
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
            labels = np.concatenate([labels, np.zeros((pad,), labels.dtype)])
        mask = np.concatenate([np.ones(real, np.float32), np.zeros(pad, np.float32)])
        yield {"image": images, "label": labels, "mask": mask}


def prefetch_to_device(
    batches: Iterator[dict[str, np.ndarray]], size: int = 2, sharding: Any = None
) -> Iterator[dict[str, jax.Array]]:
    """Keeps ``size`` batches already on their way to the device, filled by a host thread."""
    queue: collections.deque = collections.deque()
    ready = threading.Semaphore(0)
    room = threading.Semaphore(size)
    done = object()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for batch in batches:
                room.acquire()
                queue.append(jax.device_put(batch, sharding))
                ready.release()
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            errors.append(e)
        queue.append(done)
        ready.release()

    threading.Thread(target=produce, daemon=True).start()
    while True:
        ready.acquire()
        item = queue.popleft()
        if item is done:
            if errors:
                raise errors[0]
            return
        room.release()
        yield item
