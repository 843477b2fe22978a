"""Where images come from: a tfds dataset (downloaded and prepared on first use, as tfds does) or
a folder of your own images (``imagefolder:/path/to/root``), opened as a tfds builder.

    builder = sources.open_builder("cifar100", data_dir=None, download=True)
    builder = sources.open_builder("imagefolder:/data/pets", data_dir=None, download=False)

A folder holds ``train/<class>/*.jpg`` and optionally ``val/`` and ``test/`` (any subfolder is a
split); class names are the folder names, sorted. Its splits take the tfds split syntax
(``train[:90%]``).

Split strings are checked once, here (:func:`split_ranges`: parsed, split names known, not
empty), and turned into absolute (split, start, stop) ranges, which every kind of split reads;
:func:`shard_ranges` cuts them into the even data shards of the streaming pipeline.

Downloads: ``download=True`` (``config.download``, the default) runs tfds'
``download_and_prepare`` into ``data_dir`` when the dataset is not prepared there, with tfds'
progress bars. Before that, the dataset's download hosts (from tfds' checksum records; through
``$HTTPS_PROXY`` / ``$HTTP_PROXY`` where set) are probed with a short timeout, so that a machine
without network fails in seconds with a message naming the dataset, the data directory and both
fixes, instead of waiting through tfds' ten retries with exponential backoff (~3.5 minutes).
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swinjax.errors import ConfigError, DatasetNotFoundError, InvalidSplitError, UnknownDatasetError
from swinjax.network import unreachable_hosts

SYNTHETIC = "synthetic"
IMAGEFOLDER = "imagefolder:"
SPLIT_SYNTAX = (
    "slice them like 'train[:90%]', 'train[90%:]' or 'test[:1000]' "
    "(https://www.tensorflow.org/datasets/splits)"
)

Range = tuple[str, int, int]  # (split name, start, stop): examples [start, stop) of the split


def resolve_data_dir(data_dir: str | None) -> str | None:
    """``data_dir``, else ``$TFDS_DATA_DIR``, else None (tfds' default)."""
    return data_dir or os.environ.get("TFDS_DATA_DIR") or None


def open_builder(dataset: str, data_dir: str | None, download: bool) -> Any:
    """The tfds builder of ``dataset`` (a tfds name, ``name:version``, or ``imagefolder:ROOT``),
    prepared: downloaded first where ``download`` allows. Its features are checked
    (:func:`image_features`)."""
    if dataset.startswith(IMAGEFOLDER):
        builder = _image_folder(dataset[len(IMAGEFOLDER) :])
    else:
        builder = _tfds_builder(dataset, resolve_data_dir(data_dir))
        if not _is_prepared(builder):
            _prepare(builder, dataset, download)
    image_features(builder, dataset)
    return builder


def image_features(builder: Any, name: str) -> tuple[tuple[int, int] | None, int]:
    """``((H, W) or None for images of varying size, channels)``; :class:`ConfigError` unless
    the dataset has a uint8 tfds ``Image`` feature ``image`` with a channel count and a class
    ``label``."""
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
    fixed = None if height is None or width is None else (int(height), int(width))
    return fixed, int(channels)


def split_sizes(builder: Any, name: str, *, required: bool = True) -> dict[str, int]:
    """Examples per split, as the builder's metadata records them (nothing is read). Where it
    records none: :class:`InvalidSplitError` if ``required``, else ``{}``."""
    sizes = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    if required and not sizes:
        raise InvalidSplitError(
            f"{name!r} records no split sizes: is it prepared (tfds build)? "
            "(--config.input_pipeline=memory reads its splits whole without them)"
        )
    return sizes


def split_names(spec: str) -> list[str]:
    """The split names a (parsable) tfds split string reads: ``"train[:9]+test"`` -> both."""
    return list(dict.fromkeys(part.split("[")[0].strip() for part in spec.split("+")))


def split_ranges(name: str, spec: str, sizes: Mapping[str, int]) -> list[Range]:
    """``spec`` (a tfds split string) as absolute (split, start, stop) ranges over splits of
    ``sizes`` examples, by tfds' own slicing arithmetic. The one check of a split string:
    :class:`InvalidSplitError`, naming the dataset's splits and the syntax, where it does not
    parse, names a split the dataset lacks, or holds no examples."""
    import tensorflow_datasets as tfds

    known = f"The dataset's splits are {sorted(sizes)}; {SPLIT_SYNTAX}"
    try:
        instruction = tfds.core.ReadInstruction.from_spec(spec)
    except (ValueError, AssertionError) as e:
        detail = str(e).strip().splitlines()[-1].split(" See format at")[0]
        detail = "" if detail.startswith("Unrecognized split format") else f" ({detail})"
        raise InvalidSplitError(
            f"split {spec!r} of {name!r} is not a tfds split string{detail}. {known}"
        ) from None
    missing = [s for s in split_names(spec) if s not in sizes]
    if missing:
        raise InvalidSplitError(f"split {spec!r} of {name!r}: no split {missing[0]!r}. {known}")
    infos = {k: types.SimpleNamespace(num_examples=n, shard_lengths=[n]) for k, n in sizes.items()}
    try:
        absolute = instruction.to_absolute(infos)
    except (ValueError, AssertionError, KeyError) as e:
        raise InvalidSplitError(f"split {spec!r} of {name!r} is not valid: {e}. {known}") from None
    ranges = [
        (i.splitname, i.from_ or 0, sizes[i.splitname] if i.to is None else i.to) for i in absolute
    ]
    reversed_ = [f"{s}[{a}:{b}]" for s, a, b in ranges if b < a]
    if reversed_ or sum(b - a for _, a, b in ranges) == 0:
        what = f"slices {reversed_} end before they start" if reversed_ else "holds no examples"
        raise InvalidSplitError(
            f"split {spec!r} of {name!r}: {what} (splits: {dict(sizes)}); {SPLIT_SYNTAX}"
        )
    return ranges


def even_cuts(length: int, num_parts: int) -> list[tuple[int, int]]:
    """``[0, length)`` cut into ``num_parts`` consecutive (start, stop) parts by
    ``tfds.even_splits``' arithmetic: ``length // num_parts`` each, one more for the first
    ``length % num_parts``."""
    per, extra = divmod(length, num_parts)
    return [(k * per + min(k, extra), (k + 1) * per + min(k + 1, extra)) for k in range(num_parts)]


def shard_ranges(ranges: Sequence[Range], num_shards: int) -> list[list[Range]]:
    """The ``num_shards`` even data shards of ``ranges`` (as ``tfds.even_splits`` makes them):
    every range cut into even parts, shard k holding the k-th part of each (empty parts left
    out)."""
    shards: list[list[Range]] = [[] for _ in range(num_shards)]
    for split, start, stop in ranges:
        for shard, (low, high) in zip(shards, even_cuts(stop - start, num_shards), strict=True):
            if high > low:
                shard.append((split, start + low, start + high))
    return shards


def ranges_spec(ranges: Sequence[Range]) -> str:
    """Absolute ranges as a tfds split string: ``[("train", 0, 9)]`` -> ``"train[0:9]"``."""
    return "+".join(f"{split}[{start}:{stop}]" for split, start, stop in ranges)


def _is_prepared(builder: Any) -> bool:
    """tfds' ``is_prepared``, asked only where the version folder holds ``dataset_info.json``:
    tfds logs a warning ("Variant folder ... has no dataset_info.json") for any other folder,
    including one that does not exist (a data_dir without the dataset)."""
    return (builder.data_path / "dataset_info.json").exists() and builder.is_prepared()


def _tfds_builder(name: str, data_dir: str | None) -> Any:
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name.split(":")[0], known, n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise UnknownDatasetError(
            f"config.dataset={name!r} is not a tfds dataset (nor one prepared in "
            f"{data_dir or 'the default data directory'}); {hint}Use a tfds image "
            "classification dataset such as cifar100, cifar10, mnist or imagenette (see "
            f"tfds.list_builders()), {IMAGEFOLDER}/path/to/root for your own images, or "
            f"{SYNTHETIC!r} for offline synthetic data"
        ) from None


def _image_folder(root: str) -> Any:
    """tfds' ImageFolder of ``root``, or :class:`DatasetNotFoundError` saying what ROOT must
    hold (and, for a split folder given as ROOT, which folder to give instead)."""
    import tensorflow_datasets as tfds

    path = Path(root).expanduser()
    subfolders = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    layout = (
        "ROOT must hold train/ (and optionally val/, test/), each with one folder of images per "
        "class: ROOT/train/<class>/*.jpg"
    )
    if not subfolders:
        raise DatasetNotFoundError(
            f"config.dataset='{IMAGEFOLDER}{root}': {path} is not a folder of split folders; "
            f"{layout}"
        )
    builder = tfds.ImageFolder(str(path))
    if builder.info.splits:
        return builder
    message = (
        f"config.dataset='{IMAGEFOLDER}{root}': found no images in {path}/<split>/<class>/; "
        f"{layout}"
    )
    with_files = [p.name for p in subfolders if any(f.is_file() for f in p.iterdir())]
    if with_files:
        message += (
            f". {path} looks like a split folder (its subfolders {with_files[:3]} hold images, "
            f"not class folders): use --config.dataset={IMAGEFOLDER}{path.parent}"
        )
    raise DatasetNotFoundError(message)


def _prepare(builder: Any, name: str, download: bool) -> None:
    """Downloads and prepares ``builder`` in its data directory, or says why it cannot."""
    import tensorflow_datasets as tfds

    root = Path(builder.data_dir_root)
    fixes = (
        "Fix: run where the network reaches the dataset's host (swinjax downloads into "
        f'--config.data_dir; or prepare it there with tfds: python -c "import '
        f"tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='DIR')"
        '.download_and_prepare()"), then copy DIR here and pass --config.data_dir=DIR (or set '
        "TFDS_DATA_DIR=DIR)"
    )
    where = f"dataset {name!r} (version {builder.version}) is not prepared in data_dir {root}"
    found = sorted(p.name for p in (root / builder.name).glob("*") if p.is_dir())
    if found:
        where += f" (versions found there: {found}; pick one as '{builder.name}:VERSION')"
    if not download:
        raise DatasetNotFoundError(f"{where}, and config.download is False. {fixes}")
    unreachable = unreachable_hosts(getattr(builder, "url_infos", None) or {})
    if unreachable:
        raise DatasetNotFoundError(
            f"{where}, and its download hosts cannot be reached ({'; '.join(unreachable)}). {fixes}"
        )
    try:
        builder.download_and_prepare()
    except (OSError, AssertionError, tfds.core.download.DownloadError) as e:
        # tfds raises AssertionError for datasets needing a manual download (imagenet2012).
        raise DatasetNotFoundError(f"{where}; downloading it failed: {e}. {fixes}") from e
