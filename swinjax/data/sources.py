"""Where images come from: a tfds dataset (downloaded and prepared on first use, as tfds does) or
a folder of your own images (``imagefolder:/path/to/root``), opened as a tfds builder.

    builder = sources.open_builder("cifar100", data_dir=None, download=True)
    builder = sources.open_builder("imagefolder:/data/pets", data_dir=None, download=False)

A folder holds ``train/<class>/*.jpg`` and optionally ``val/`` and ``test/`` (any subfolder is a
split); class names are the folder names, sorted. Its splits take the tfds split syntax
(``train[:90%]``).

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from swinjax.errors import ConfigError, DatasetNotFoundError, InvalidSplitError, UnknownDatasetError
from swinjax.network import unreachable_hosts

SYNTHETIC = "synthetic"
IMAGEFOLDER = "imagefolder:"


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
        if not builder.is_prepared() and not tfds_is_mocked():
            _prepare(builder, dataset, download)
    image_features(builder, dataset)
    return builder


def image_features(builder: Any, name: str) -> tuple[tuple[int, int] | None, int]:
    """``((H, W) or None for images of varying size, channels)``; ValueError unless the dataset
    has uint8 ``image`` and class ``label`` features."""
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ConfigError(
            f"dataset {name!r} has features {list(features)}; swinjax needs 'image' and 'label'"
        )
    image, label = features["image"], features["label"]
    if np.dtype(image.np_dtype) != np.uint8:
        raise ConfigError(
            f"dataset {name!r}: images are {np.dtype(image.np_dtype).name}, not uint8"
        )
    if getattr(label, "num_classes", None) is None:
        raise ConfigError(f"dataset {name!r}: 'label' is not a class label ({label!r})")
    h, w, c = tuple(image.shape)
    return (None if h is None or w is None else (int(h), int(w))), int(c or 3)


def tfds_is_mocked() -> bool:
    """True inside ``tfds.testing.mock_data`` (its fake examples need no preparing or caching)."""
    from tensorflow_datasets.core import dataset_builder

    as_dataset = dataset_builder.DatasetBuilder.as_dataset
    return getattr(as_dataset, "__module__", "") != dataset_builder.__name__


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
    import tensorflow_datasets as tfds

    path = Path(root).expanduser()
    splits = sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    if not splits:
        raise DatasetNotFoundError(
            f"config.dataset='{IMAGEFOLDER}{root}': {path} is not a folder of split folders; "
            "expected ROOT/train/<class>/*.jpg (and optionally ROOT/val/, ROOT/test/)"
        )
    return tfds.ImageFolder(str(path))


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


def split_ranges(name: str, spec: str, sizes: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """``spec`` (a tfds split string) as (split, start, stop) ranges over splits of ``sizes``
    examples, by tfds' own slicing arithmetic; :class:`InvalidSplitError` naming the dataset's
    splits where it does not parse or names a split the dataset lacks."""
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
