"""Streaming input pipeline (tf.data over tfds) for splits larger than host memory.

:class:`StreamSplit` has the public attributes of :class:`swinjax.data.in_memory.Split` except its
arrays, and methods with the contracts of ``data.train_batches`` / ``data.eval_batches``: numpy
batches ``{"image": uint8 [b, H, W, C], "label": int32 [b]}`` (+ ``"mask": float32 [b]`` for eval),
b this process's rows of each global batch. Build one with :func:`open_split`.

Sharding is by data shards, not by processes: the split is cut into ``num_shards`` even parts
(``tfds.even_splits``); shard k feeds rows [k b, (k+1) b) of every global batch, b = batch_size
// num_shards, and process p of P reads shards [p S/P, (p+1) S/P), concatenated in shard order.
Set ``num_shards`` to the global device count: the global batches are then the same however the
devices are spread over processes (1 process x 2 shards == 2 processes x 1 shard).

Training order, per shard: tfds' file order shuffled with a seed, then a seeded shuffle buffer
of ``shuffle_buffer`` encoded examples (a true permutation when it holds the whole shard), so an
epoch's order is a pure function of (seed, epoch, num_shards). Examples are read undecoded,
numbered (``enumerate``), skipped to ``start_step`` (an exact resume, before any decoding), then
decoded and preprocessed in parallel (deterministic order). Host preprocessing draws its random
numbers from stateless ops seeded by (seed, epoch, shard, position in the epoch's order), so a
resumed epoch yields bit for bit the batches of an uninterrupted one. Evaluation reads each shard
in file order and pads every shard to the same number of batches (zero image, label 0, mask 0).

Seeds come from numpy's ``SeedSequence`` of (seed, epoch, shard, purpose). tf.data's seeded
shuffles also mix in TF's global seed: a program calling ``tf.random.set_seed`` gets other
(still deterministic) orders, so every process must then set the same one. The shuffle buffer
holds encoded examples, per shard: memory ~ ``shuffle_buffer`` x mean encoded size x shards per
process (16 384 x ~110 KB = 1.8 GB for ImageNet JPEGs), and it fills before an epoch's first
batch. A tfds ``ImageFolder`` is read as file paths (a full seeded permutation of each shard,
``shuffle_buffer`` unused; files are read in the parallel map, skipped ones never).

Builders: ``tfds.builder(dataset, data_dir=DIR)`` (prepared; nothing downloads), or
``tfds.ImageFolder(root)`` (``root/split/class/*.jpg``; variable size, so ``host_preprocess``).

Train pipeline alone, one epoch from ``train_batches`` (start-up and buffer fill included), on
2 CPU cores shared with other work (load average 3.4-4.0), 2026-11-29, one run each:

(i) CIFAR-10 (tfds ``cifar10`` 3.0.2, 32x32 PNG, one record file), batch 256: 6 720 examples/s::

    python -c "import time, tensorflow_datasets as tfds; from swinjax.data import stream
    s = stream.open_split(tfds.builder('cifar10', data_dir='/work/shared/datasets/tfds'), 'train')
    t = time.perf_counter(); n = sum(len(b['label']) for b in s.train_batches(256, 0, 0))
    print(n / (time.perf_counter() - t))"

(ii) 2000 JPEGs of random sizes 200-500 px (noise-textured, 108 KB each on average, like
ImageNet's), random-resized crops to 224x224 (bilinear, antialiased), batch 128: 295 examples/s
(``eval_batches``: 405 examples/s)::

    python -c "from tests import tfds_fixture as f; f.build('/tmp/stream_bench_tfds',
    f.TinyImages(name='stream_bench_jpegs', image_size=None, size_range=(200, 500),
    encoding_format='jpeg', train_examples=2000, test_examples=0))"
    python -c "import time, tensorflow_datasets as tfds; from swinjax.data import stream
    from swinjax.data.preprocess import HostPreprocess
    b = tfds.builder('stream_bench_jpegs', data_dir='/tmp/stream_bench_tfds')
    s = stream.open_split(b, 'train', host_preprocess=HostPreprocess((224, 224)))
    t = time.perf_counter(); n = sum(len(x['label']) for x in s.train_batches(128, 0, 0))
    print(n / (time.perf_counter() - t))"
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from swinjax.data.batching import check_batch_size
from swinjax.data.preprocess import HostPreprocess, eval_image, train_image
from swinjax.errors import ConfigError, InvalidSplitError

DEFAULT_SHUFFLE_BUFFER = 16_384
_ORDER, _CROPS = 1, 2  # purposes of derived seeds


@dataclasses.dataclass(frozen=True, eq=False)
class StreamSplit:
    """One split read from tfds as it streams. Build it with :func:`open_split`."""

    builder: Any  # a tfds builder whose as_dataset works (prepared, or e.g. ImageFolder)
    spec: str  # tfds split string, e.g. "train[:90%]"
    name: str  # "dataset:spec"
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (H, W, C) of the images in the batches
    shard_sizes: tuple[int, ...]  # examples in each of the num_shards even parts
    host_preprocess: HostPreprocess | None = None  # None: fixed-size images, only decoded
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER  # per shard, in examples

    @property
    def num_shards(self) -> int:
        return len(self.shard_sizes)

    @property
    def _image_feature(self) -> Any:
        return self.builder.info.features["image"]

    @property
    def num_examples(self) -> int:
        return sum(self.shard_sizes)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full training batches per epoch: min over shards of floor(shard size / b)."""
        return min(self.shard_sizes) // self._shard_batch(batch_size)

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
        ``data.train_batches``: this process's ``batch_size // process_count`` rows of each."""
        b = self._shard_batch(batch_size)
        shards = self._process_shards(process_index, process_count)
        num_steps = self.steps_per_epoch(batch_size)
        if not 0 <= start_step <= num_steps:
            raise ConfigError(f"start_step {start_step} is outside the epoch's {num_steps} steps")
        if start_step == num_steps:
            return
        parts = [self._train_shard(k, b, seed, epoch, start_step, num_steps) for k in shards]
        yield from _concat_shards(parts).as_numpy_iterator()  # numpy dicts

    def eval_batches(
        self, batch_size: int, *, process_index: int = 0, process_count: int = 1
    ) -> Iterator[dict[str, np.ndarray]]:
        """Every example once, as ``data.eval_batches``: ``{"image", "label", "mask"}``, each
        shard padded to ceil(max shard size / b) batches (zero image, label 0, mask 0.0)."""
        b = self._shard_batch(batch_size)
        shards = self._process_shards(process_index, process_count)
        num_batches = -(-max(self.shard_sizes) // b)
        parts = [self._eval_shard(k, b, num_batches) for k in shards]
        yield from _concat_shards(parts).as_numpy_iterator()  # numpy dicts

    # ---------------------------------------------------------------------------- internals

    def _shard_batch(self, batch_size: int) -> int:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        check_batch_size(batch_size, self.num_shards, unit="data shards (num_shards)")
        return batch_size // self.num_shards

    def _process_shards(self, process_index: int, process_count: int) -> range:
        if not 0 <= process_index < process_count:
            raise ConfigError(f"process_index {process_index} is outside [0, {process_count})")
        if self.num_shards % process_count:
            raise ConfigError(
                f"num_shards {self.num_shards} of {self.name} is not divisible by process_count "
                f"{process_count}; open the split with num_shards = the global device count "
                "(a multiple of the process count)"
            )
        per = self.num_shards // process_count
        return range(process_index * per, (process_index + 1) * per)

    def _train_shard(self, k: int, b: int, seed: int, epoch: int, start: int, stop: int) -> Any:
        import tensorflow as tf

        file_seed, buffer_seed = _derive_pair(seed, epoch, k, _ORDER)
        crop_key_2 = tf.constant(_derive_pair(seed, epoch, k, _CROPS), tf.int64)
        ds, paths = _read_encoded(self.builder, self._shard(k), file_seed)
        buffer = self.shard_sizes[k] if paths else self.shuffle_buffer  # paths: a full shuffle
        ds = ds.shuffle(buffer, seed=buffer_seed, reshuffle_each_iteration=False)
        ds = ds.enumerate().skip(start * b).take((stop - start) * b)  # resume before decoding
        pre, channels, feature = self.host_preprocess, self.image_shape[-1], self._image_feature

        def prepare(position: Any, example: dict) -> dict:
            encoded = tf.io.read_file(example["image"]) if paths else example["image"]
            if pre is None:
                image_HWC = feature.decode_example(encoded)
            else:
                seed_2 = tf.random.experimental.stateless_fold_in(
                    crop_key_2, position, alg="philox"
                )
                image_HWC = train_image(encoded, seed_2, pre, channels)
            return {
                "image": tf.ensure_shape(image_HWC, self.image_shape),
                "label": tf.cast(example["label"], tf.int32),
            }

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(b, drop_remainder=True)

    def _eval_shard(self, k: int, b: int, num_batches: int) -> Any:
        import tensorflow as tf

        ds, paths = _read_encoded(self.builder, self._shard(k), None)
        pre, channels, feature = self.host_preprocess, self.image_shape[-1], self._image_feature

        def prepare(example: dict) -> dict:
            encoded = tf.io.read_file(example["image"]) if paths else example["image"]
            image_HWC = (
                feature.decode_example(encoded)
                if pre is None
                else eval_image(encoded, pre, channels)
            )
            return {
                "image": tf.ensure_shape(image_HWC, self.image_shape),
                "label": tf.cast(example["label"], tf.int32),
                "mask": tf.constant(1.0, tf.float32),
            }

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        padding = {
            "image": tf.zeros(self.image_shape, tf.uint8),
            "label": tf.constant(0, tf.int32),
            "mask": tf.constant(0.0, tf.float32),
        }
        pad = num_batches * b - self.shard_sizes[k]
        ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(pad))
        return ds.batch(b, drop_remainder=True)

    def _shard(self, k: int) -> Any:
        import tensorflow_datasets as tfds

        return tfds.even_splits(self.spec, n=self.num_shards)[k]


def open_split(
    builder: Any,
    spec: str,
    *,
    name: str | None = None,
    num_shards: int = 1,
    host_preprocess: HostPreprocess | None = None,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
) -> StreamSplit:
    """The split ``spec`` of ``builder`` (e.g. ``tfds.builder(dataset, data_dir=DIR)``, or
    ``tfds.ImageFolder(root)``), cut into ``num_shards`` data shards; ``name`` (default: the
    builder's) names the dataset in ``StreamSplit.name`` = ``"name:spec"``.

    Raises ValueError for a builder without ``image`` / class ``label`` features, variable-size
    images without ``host_preprocess``, or bad sizes; :class:`swinjax.errors.InvalidSplitError` (a
    ValueError) for a spec that does not parse, names a missing split, or leaves a shard empty.
    """
    name = name or getattr(builder, "name", "dataset")
    image_shape = _check_features(builder, name, host_preprocess)
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ConfigError(f"num_shards must be an int >= 1, got {num_shards!r}")
    if shuffle_buffer < 1:
        raise ConfigError(f"shuffle_buffer must be >= 1, got {shuffle_buffer}")
    shard_sizes = _shard_sizes(builder, name, spec, num_shards)
    label = builder.info.features["label"]
    return StreamSplit(
        builder=builder,
        spec=spec,
        name=f"{name}:{spec}",
        num_classes=int(label.num_classes),
        class_names=tuple(getattr(label, "names", None) or ()),
        image_shape=image_shape,
        shard_sizes=shard_sizes,
        host_preprocess=host_preprocess,
        shuffle_buffer=int(shuffle_buffer),
    )


def _check_features(builder: Any, name: str, pre: HostPreprocess | None) -> tuple[int, int, int]:
    """(H, W, C) of the batches' images, or a ValueError saying what the dataset lacks."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ConfigError(
            f"dataset {name!r} has features {list(features)}; swinjax needs 'image' and 'label'"
        )
    image, label = features["image"], features["label"]
    if not isinstance(image, tfds.features.Image) or np.dtype(image.np_dtype) != np.uint8:
        raise ConfigError(f"dataset {name!r}: 'image' is not a uint8 tfds Image ({image!r})")
    if getattr(label, "num_classes", None) is None:
        raise ConfigError(f"dataset {name!r}: 'label' is not a class label ({label!r})")
    height, width, channels = tuple(image.shape)
    if channels is None:
        raise ConfigError(f"dataset {name!r}: images of shape {image.shape} have no channel count")
    if pre is not None:
        return (*pre.output_size, int(channels))
    if height is None or width is None:
        raise ConfigError(
            f"dataset {name!r} has images of variable size {image.shape}; pass "
            "host_preprocess=HostPreprocess(output_size=(H, W)) to crop and resize them"
        )
    return int(height), int(width), int(channels)


def _shard_sizes(builder: Any, name: str, spec: str, num_shards: int) -> tuple[int, ...]:
    """Examples in each even part of ``spec``, from the builder's split info (nothing read)."""
    import tensorflow_datasets as tfds

    splits = builder.info.splits
    if not splits:
        raise InvalidSplitError(f"{name!r} records no split sizes: is it prepared (tfds build)?")
    try:
        _ranges(tfds.core.ReadInstruction.from_spec(spec), splits)
        sizes = tuple(
            sum(stop - start for _, start, stop in _ranges(part, splits))
            for part in tfds.even_splits(spec, n=num_shards)
        )
    except (ValueError, KeyError, AssertionError, TypeError) as e:
        raise InvalidSplitError(
            f"split {spec!r} of {name!r} is not valid: {str(e).strip()}. The dataset's splits "
            f"are {sorted(splits.keys())}; slice them like 'train[:90%]' or 'test[:1000]'"
        ) from None
    if min(sizes) < 1:
        raise InvalidSplitError(
            f"split {spec!r} of {name!r} has {sum(sizes)} examples: too few for "
            f"{num_shards} non-empty shards"
        )
    return sizes


def _ranges(split: Any, splits: Any) -> list[tuple[str, int, int]]:
    """``split`` (a tfds split object) as absolute (split name, start, stop) ranges."""
    return [
        (i.splitname, i.from_ or 0, splits[i.splitname].num_examples if i.to is None else i.to)
        for i in split.to_absolute(splits)
    ]


def _read_encoded(builder: Any, shard: Any, file_seed: int | None) -> tuple[Any, bool]:
    """Shard ``shard`` as ``{"image": encoded bytes, "label": int64}``, files in a seeded
    shuffled order (``file_seed``) or in file order (None), deterministic either way; and
    whether "image" holds file paths instead (an ImageFolder: read them when decoding)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.dataset_builder import FileReaderBuilder

    options = tf.data.Options()
    options.deterministic = True
    if _image_folder_examples(builder) is not None:
        return _image_folder_paths(builder, shard).with_options(options), True
    read_config = tfds.ReadConfig(
        options=options,
        try_autocache=False,
        skip_prefetch=True,
        shuffle_seed=file_seed,
        shuffle_reshuffle_each_iteration=False,
    )
    kwargs = {"decoders": {"image": tfds.decode.SkipDecoding()}, "read_config": read_config}
    if isinstance(builder, FileReaderBuilder):  # reads only the shard's files and records
        shuffle_files = file_seed is not None and not builder.info.disable_shuffling
        ds = builder.as_dataset(split=shard, shuffle_files=shuffle_files, **kwargs)
    else:  # a builder that reads whole named splits only: slice them here, in file order
        parts = [
            builder.as_dataset(split=split, shuffle_files=False, **kwargs).skip(a).take(b - a)
            for split, a, b in _ranges(shard, builder.info.splits)
        ]
        ds = functools.reduce(lambda x, y: x.concatenate(y), parts)
    ds = ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
    return ds.with_options(options), False


def _image_folder_examples(builder: Any) -> dict | None:
    """tfds ImageFolder's (path, label name) lists per split, in its fixed order; else None."""
    from tensorflow_datasets.core.folder_dataset import image_folder

    if isinstance(builder, image_folder.ImageFolder):
        return getattr(builder, "_split_examples", None)
    return None


def _image_folder_paths(builder: Any, shard: Any) -> Any:
    """An ImageFolder shard as ``{"image": file path, "label": int64}``: what its as_dataset
    reads, without reading files that other shards (or a resumed epoch's skip) pass over."""
    import tensorflow as tf

    examples, label = _image_folder_examples(builder), builder.info.features["label"]
    chosen = [
        example
        for split, a, b in _ranges(shard, builder.info.splits)
        for example in examples[split][a:b]
    ]
    paths = tf.constant([e.image_path for e in chosen], tf.string)
    labels = tf.constant([label.str2int(e.label) for e in chosen], tf.int64)
    return tf.data.Dataset.from_tensor_slices({"image": paths, "label": labels})


def _concat_shards(parts: list) -> Any:
    """One dataset of batches: each shard's batch concatenated in shard order, prefetched."""
    import tensorflow as tf

    if len(parts) == 1:
        ds = parts[0]
    else:
        ds = tf.data.Dataset.zip(tuple(parts)).map(
            lambda *batches: {key: tf.concat([p[key] for p in batches], 0) for key in batches[0]}
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def _derive_pair(*words: int) -> list[int]:
    """Two seeds in [0, 2**63), a pure function of ``words`` (any ints, even negative)."""
    entropy = [int(w) % 2**64 for w in (0x57EA, *words)]
    return [int(x) >> 1 for x in np.random.SeedSequence(entropy).generate_state(2, np.uint64)]
