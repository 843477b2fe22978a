"""What one data shard of a streamed split (:mod:`swinjax.data.stream`) reads, undecoded.

- :class:`RecordShard`: absolute (split, start, stop) ranges of a tfds dataset's record files,
  read as ``{"image": encoded bytes, "label": int64}``.
- :class:`FileShard`: a list of image files and their labels, for a tfds ``ImageFolder``, read as
  ``{"image": file path, "label": int64}`` (the files are read when decoding, so examples that
  other shards or a resumed epoch's skip pass over are never read). An image folder's labels are
  known from its folder names, so a class subset is chosen here without reading any image;
  unreadable files (found by :mod:`swinjax.data.screening`) are left out before the cut.

Both cut a split into even shards by ``tfds.even_splits``' arithmetic (every range of the split
string cut into ``num_shards`` even parts, shard k holding the k-th part of each).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence, Set
from typing import Any

from swinjax.data.classes import ClassSubset
from swinjax.data.sources import Range, even_cuts, ranges_spec, shard_ranges


@dataclasses.dataclass(frozen=True)
class RecordShard:
    """Ranges of a tfds dataset's splits, read from its record files."""

    ranges: tuple[Range, ...]
    reads_paths = False  # "image" holds encoded bytes

    @property
    def size(self) -> int:
        return sum(stop - start for _, start, stop in self.ranges)

    def head(self, num_examples: int) -> RecordShard:
        """The shard's first ``num_examples`` examples (in file order)."""
        kept, left = [], num_examples
        for split, start, stop in self.ranges:
            take = min(stop - start, left)
            if take > 0:
                kept.append((split, start, start + take))
            left -= take
        return RecordShard(tuple(kept))

    def read(self, builder: Any, file_seed: int | None) -> Any:
        """``{"image": encoded bytes, "label": int64}``, files in a seeded shuffled order
        (``file_seed``) or in file order (None), deterministic either way."""
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core.dataset_builder import FileReaderBuilder

        read_config = tfds.ReadConfig(
            options=_deterministic(),
            try_autocache=False,
            skip_prefetch=True,
            shuffle_seed=file_seed,
            shuffle_reshuffle_each_iteration=False,
        )
        kwargs = {"decoders": {"image": tfds.decode.SkipDecoding()}, "read_config": read_config}
        if isinstance(builder, FileReaderBuilder):  # reads only the shard's files and records
            shuffle_files = file_seed is not None and not builder.info.disable_shuffling
            ds = builder.as_dataset(
                split=ranges_spec(self.ranges), shuffle_files=shuffle_files, **kwargs
            )
        else:  # a builder that reads whole named splits only: slice them here, in file order
            parts = [
                builder.as_dataset(split=split, shuffle_files=False, **kwargs).skip(a).take(b - a)
                for split, a, b in self.ranges
            ]
            ds = functools.reduce(lambda x, y: x.concatenate(y), parts)
        ds = ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
        return ds.with_options(_deterministic())


@dataclasses.dataclass(frozen=True, eq=False)
class FileShard:
    """Image files (an ImageFolder's, in its fixed order) and their labels."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    reads_paths = True  # "image" holds a file path

    @property
    def size(self) -> int:
        return len(self.paths)

    def head(self, num_examples: int) -> FileShard:
        """The shard's first ``num_examples`` files."""
        return FileShard(self.paths[:num_examples], self.labels[:num_examples])

    def read(self, builder: Any, file_seed: int | None) -> Any:
        """``{"image": file path, "label": int64}`` in the shard's order (``file_seed`` unused:
        the stream shuffles the whole shard)."""
        import tensorflow as tf

        del builder, file_seed
        examples = {
            "image": tf.constant(self.paths, tf.string, shape=[self.size]),
            "label": tf.constant(self.labels, tf.int64, shape=[self.size]),
        }
        return tf.data.Dataset.from_tensor_slices(examples).with_options(_deterministic())


def record_shards(ranges: Sequence[Range], num_shards: int) -> list[RecordShard]:
    """The even record shards of a split's ranges."""
    return [RecordShard(tuple(part)) for part in shard_ranges(ranges, num_shards)]


def is_image_folder(builder: Any) -> bool:
    from tensorflow_datasets.core.folder_dataset import image_folder

    return isinstance(builder, image_folder.ImageFolder)


def folder_files(
    builder: Any, ranges: Sequence[Range], subset: ClassSubset | None = None
) -> list[list[tuple[str, int]]]:
    """Per range of an ImageFolder's split, its (file path, label) pairs in the folder's fixed
    order: only those of ``subset``'s classes (relabelled) where given."""
    examples = builder._split_examples  # tfds ImageFolder's (path, label name) lists per split
    label = builder.info.features["label"]
    new_label = subset.new_label_K if subset is not None else None
    files = []
    for split, start, stop in ranges:
        chosen = [(e.image_path, label.str2int(e.label)) for e in examples[split][start:stop]]
        if new_label is not None:
            chosen = [(path, int(new_label[y])) for path, y in chosen if new_label[y] >= 0]
        files.append(chosen)
    return files


def file_shards(
    files: Sequence[Sequence[tuple[str, int]]], num_shards: int, leave_out: Set[str] = frozenset()
) -> list[FileShard]:
    """The even file shards of a split's files (per range, as :func:`folder_files` gives them):
    the files in ``leave_out`` (unreadable ones) taken out first, then each range's files cut
    into even parts."""
    parts: list[tuple[list[str], list[int]]] = [([], []) for _ in range(num_shards)]
    for chosen in files:
        kept = [(path, y) for path, y in chosen if path not in leave_out]
        cuts = even_cuts(len(kept), num_shards)
        for (paths, labels), (low, high) in zip(parts, cuts, strict=True):
            paths.extend(path for path, _ in kept[low:high])
            labels.extend(y for _, y in kept[low:high])
    return [FileShard(tuple(paths), tuple(labels)) for paths, labels in parts]


def _deterministic() -> Any:
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    return options
