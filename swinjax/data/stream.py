"""Streaming input pipeline (tf.data over tfds) for splits larger than host memory and images of
varying size: :class:`StreamedSplit`, a :class:`swinjax.data.split.Split`. Build one with
:func:`open_split`.

Its batches are numpy ``{"image": uint8 [b, H, W, C], "label": int32 [b]}`` (+ ``"mask": float32
[b]`` for eval), b this process's rows of each global batch, under the contracts of
:func:`swinjax.data.split.train_batches` / :func:`~swinjax.data.split.eval_batches`.

Sharding is by data shards, not by processes: the split is cut into ``num_shards`` even parts
(by ``tfds.even_splits``' arithmetic, :mod:`swinjax.data.shards`); shard k feeds rows
[k b, (k+1) b) of every global batch, b = batch_size // num_shards, and process p of P reads
shards [p S/P, (p+1) S/P), concatenated in shard order. Set ``num_shards`` to the global device
count: the global batches are then the same however the devices are spread over processes
(1 process x 2 shards == 2 processes x 1 shard).

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
``shuffle_buffer`` unused; files are read in the parallel map, skipped ones never); its class
subsets (``classes``) are chosen from its file list, without reading images.

Unreadable image files: an image folder's split is screened when it is opened (every file
decoded once, :mod:`swinjax.data.screening`); ``bad_images="skip"`` leaves the unreadable files
out before the shards are cut (``StreamedSplit.left_out`` lists them), ``"fail"`` raises
:class:`BadImageError`. A file that fails to decode while streaming (it changed after
screening) stops the iteration with a :class:`BadImageError` naming it: the failing batch's
files, recomputed from the deterministic order, are decoded again to find it.

Builders: ``tfds.builder(dataset, data_dir=DIR)`` (prepared; nothing downloads), or
``tfds.ImageFolder(root)`` (``root/split/class/*.jpg``; variable size, so ``host_preprocess``).
Throughput measurements: docs/performance.md, "Input pipeline".
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from swinjax.data import screening
from swinjax.data import shards as shards_lib
from swinjax.data.batching import check_batch_size
from swinjax.data.classes import ClassSubset
from swinjax.data.image_files import BadImage
from swinjax.data.preprocess import HostPreprocess, eval_image, train_image
from swinjax.data.shards import FileShard, RecordShard
from swinjax.data.sources import even_cuts, image_features, split_ranges, split_sizes
from swinjax.errors import ConfigError, InvalidSplitError

DEFAULT_SHUFFLE_BUFFER = 16_384
_ORDER, _CROPS = 1, 2  # purposes of derived seeds


@dataclasses.dataclass(frozen=True, eq=False)
class StreamedSplit:
    """One split read from tfds as it streams. Build it with :func:`open_split`."""

    builder: Any  # a tfds builder whose as_dataset works (prepared, or e.g. ImageFolder)
    name: str  # "dataset:spec"
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (H, W, C) of the images in the batches
    shards: tuple[RecordShard | FileShard, ...]  # the num_shards data shards
    host_preprocess: HostPreprocess | None = None  # None: fixed-size images, only decoded
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER  # per shard, in examples
    left_out: tuple[BadImage, ...] = ()  # image folders: unreadable files, not in the shards

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    @property
    def shard_sizes(self) -> tuple[int, ...]:
        """Examples in each data shard."""
        return tuple(shard.size for shard in self.shards)

    @property
    def num_examples(self) -> int:
        return sum(self.shard_sizes)

    @property
    def _image_feature(self) -> Any:
        return self.builder.info.features["image"]

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full training batches per epoch: min over shards of floor(shard size / b)."""
        return min(self.shard_sizes) // self._shard_batch(batch_size)

    def head(self, num_examples: int) -> StreamedSplit:
        """``num_examples`` examples spread evenly over the shards, the first of each (in file
        order), e.g. a validation stand-in."""
        if not self.num_shards <= num_examples <= self.num_examples:
            raise ConfigError(
                f"head({num_examples}) of {self.name}: take {self.num_shards}.."
                f"{self.num_examples} examples (at least one per data shard)"
            )
        cuts = even_cuts(num_examples, self.num_shards)
        heads = tuple(
            shard.head(high - low) for shard, (low, high) in zip(self.shards, cuts, strict=True)
        )
        name = f"{self.name}[:{sum(shard.size for shard in heads)}]"  # shards may hold fewer
        return dataclasses.replace(self, name=name, shards=heads)

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
        :func:`swinjax.data.split.train_batches`: this process's ``batch_size //
        process_count`` rows of each."""
        b = self._shard_batch(batch_size)
        shards = self._process_shards(process_index, process_count)
        num_steps = self.steps_per_epoch(batch_size)
        if not 0 <= start_step <= num_steps:
            raise ConfigError(f"start_step {start_step} is outside the epoch's {num_steps} steps")
        if start_step == num_steps:
            return
        parts = [self._train_shard(k, b, seed, epoch, start_step, num_steps) for k in shards]

        def files_of(i: int) -> list[str]:  # the files of the i-th batch yielded
            step = start_step + i
            return [p for k in shards for p in self._train_files(k, b, seed, epoch, step)]

        yield from self._named_failures(_concat_shards(parts), files_of)

    def eval_batches(
        self, batch_size: int, *, process_index: int = 0, process_count: int = 1
    ) -> Iterator[dict[str, np.ndarray]]:
        """Every example once, as :func:`swinjax.data.split.eval_batches`, each
        shard padded to ceil(max shard size / b) batches (zero image, label 0, mask 0.0)."""
        b = self._shard_batch(batch_size)
        shards = self._process_shards(process_index, process_count)
        num_batches = -(-max(self.shard_sizes) // b)
        parts = [self._eval_shard(k, b, num_batches) for k in shards]

        def files_of(i: int) -> list[str]:
            return [p for k in shards for p in self._files(k)[i * b : (i + 1) * b]]

        yield from self._named_failures(_concat_shards(parts), files_of)

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

    def _named_failures(
        self, ds: Any, files_of: Callable[[int], list[str]]
    ) -> Iterator[dict[str, np.ndarray]]:
        """``ds``'s batches as numpy dicts; a decoding error in the i-th batch of an image
        folder's split becomes a :class:`BadImageError` naming the unreadable files among
        ``files_of(i)`` (other errors, and record files, keep TensorFlow's error)."""
        import tensorflow as tf

        batches = ds.as_numpy_iterator()
        decode_errors = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError)
        for i in itertools.count():
            try:
                batch = next(batches)
            except StopIteration:
                return
            except decode_errors:
                files = files_of(i) if self.shards[0].reads_paths else []
                failure = screening.decode_failure(files, self.name) if files else None
                if failure is None:
                    raise
                raise failure from None
            yield batch

    def _files(self, k: int) -> tuple[str, ...]:
        """The files of shard ``k`` in file order (none for record files)."""
        shard = self.shards[k]
        return shard.paths if shard.reads_paths else ()

    def _train_order(self, k: int, b: int, seed: int, epoch: int, start: int, stop: int) -> Any:
        """Shard ``k``'s undecoded (position, example) pairs of batches [start, stop) of
        ``epoch``: the epoch's order, skipped to ``start`` before anything is decoded."""
        file_seed, buffer_seed = _derive_pair(seed, epoch, k, _ORDER)
        shard = self.shards[k]
        ds = shard.read(self.builder, file_seed)
        buffer = shard.size if shard.reads_paths else self.shuffle_buffer  # paths: a full shuffle
        ds = ds.shuffle(buffer, seed=buffer_seed, reshuffle_each_iteration=False)
        return ds.enumerate().skip(start * b).take((stop - start) * b)  # resume before decoding

    def _train_files(self, k: int, b: int, seed: int, epoch: int, step: int) -> list[str]:
        """The files shard ``k`` gives batch ``step`` of ``epoch`` (none for record files)."""
        if not self.shards[k].reads_paths:
            return []
        order = self._train_order(k, b, seed, epoch, step, step + 1)
        return [example["image"].decode() for _, example in order.as_numpy_iterator()]

    def _train_shard(self, k: int, b: int, seed: int, epoch: int, start: int, stop: int) -> Any:
        import tensorflow as tf

        crop_key_2 = tf.constant(_derive_pair(seed, epoch, k, _CROPS), tf.int64)
        ds = self._train_order(k, b, seed, epoch, start, stop)
        paths = self.shards[k].reads_paths
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

        ds, paths = self.shards[k].read(self.builder, None), self.shards[k].reads_paths
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


def open_split(
    builder: Any,
    spec: str,
    *,
    name: str | None = None,
    num_shards: int = 1,
    host_preprocess: HostPreprocess | None = None,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    classes: tuple[int, ...] = (),
    bad_images: str = screening.SKIP,
) -> StreamedSplit:
    """The split ``spec`` of ``builder`` (e.g. ``tfds.builder(dataset, data_dir=DIR)``, or
    ``tfds.ImageFolder(root)``), cut into ``num_shards`` data shards; ``name`` (default: the
    builder's) names the dataset in ``StreamedSplit.name`` = ``"name:spec"``. ``classes``: keep
    only these classes, renumbered 0..k-1 in the order given (image folders only: their labels
    are known without reading the images). ``bad_images``: what an image folder's unreadable
    files do, ``"skip"`` (left out, in ``left_out``) or ``"fail"`` (:class:`BadImageError`),
    found by decoding every file of the split once (:mod:`swinjax.data.screening`).

    Raises :class:`ConfigError` for a builder without ``image`` / class ``label`` features,
    variable-size images without ``host_preprocess``, bad sizes, or classes on a dataset of
    record files; :class:`InvalidSplitError` for a spec that does not parse, names a missing
    split, or leaves a shard empty (both are ValueErrors).
    """
    name = name or getattr(builder, "name", "dataset")
    fixed, channels = image_features(builder, name)
    if host_preprocess is None and fixed is None:
        raise ConfigError(
            f"dataset {name!r} has images of variable size {builder.info.features['image'].shape}"
            "; pass host_preprocess=HostPreprocess(output_size=(H, W)) to crop and resize them"
        )
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ConfigError(f"num_shards must be an int >= 1, got {num_shards!r}")
    if shuffle_buffer < 1:
        raise ConfigError(f"shuffle_buffer must be >= 1, got {shuffle_buffer}")
    screening.check_policy(bad_images)
    ranges = split_ranges(name, spec, split_sizes(builder, name))
    label = builder.info.features["label"]
    names = tuple(getattr(label, "names", None) or ())
    subset = ClassSubset(classes, int(label.num_classes), f"{name}:{spec}") if classes else None
    whose = subset.name if subset else f"{name}:{spec}"
    shards, left_out = _shards(builder, name, ranges, num_shards, subset, bad_images, whose)
    if min(shard.size for shard in shards) < 1:
        readable = " readable" if left_out else ""
        raise InvalidSplitError(
            f"split {spec!r} of {name!r} has {sum(shard.size for shard in shards)}{readable} "
            f"examples{' of those classes' if subset else ''}: too few for {num_shards} "
            "non-empty shards"
        )
    return StreamedSplit(
        builder=builder,
        name=whose,
        num_classes=len(classes) if subset else int(label.num_classes),
        class_names=subset.class_names(names) if subset else names,
        image_shape=(*(host_preprocess.output_size if host_preprocess else fixed), channels),
        shards=tuple(shards),
        host_preprocess=host_preprocess,
        shuffle_buffer=int(shuffle_buffer),
        left_out=left_out,
    )


def _shards(
    builder: Any,
    name: str,
    ranges: list,
    num_shards: int,
    subset: ClassSubset | None,
    bad_images: str,
    whose: str,
) -> tuple[list[RecordShard | FileShard], tuple[BadImage, ...]]:
    """The data shards, and the unreadable files left out of them (image folders: screened)."""
    if shards_lib.is_image_folder(builder):
        files = shards_lib.folder_files(builder, ranges, subset)
        paths = [path for chosen in files for path, _ in chosen]
        bad = screening.screen(paths, policy=bad_images, name=whose)
        return shards_lib.file_shards(files, num_shards, {b.path for b in bad}), bad
    if subset is not None:
        raise ConfigError(
            f"config.classes on {name!r}, streamed: the labels of a tfds dataset's records are "
            "known only by reading them all. Use --config.input_pipeline=memory (images of one "
            "size that fit in memory), or an image folder (imagefolder:ROOT), whose labels come "
            "from its folder names"
        )
    return shards_lib.record_shards(ranges, num_shards), ()


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
    entropy = [int(word) % 2**64 for word in (0x57EA, *words)]
    return [int(x) >> 1 for x in np.random.SeedSequence(entropy).generate_state(2, np.uint64)]
