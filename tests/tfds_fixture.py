"""Real tfds dataset directories for tests, written by tfds' own builder machinery, offline.

:func:`build` writes a small image classification dataset with ``tfds.core.GeneratorBasedBuilder``
and ``download_and_prepare()`` (record files, ``dataset_info.json``, ``features.json``: what
``tfds build`` writes) into a directory, so tests read it through the unmodified tfds code path
with ``config.dataset = spec.name`` and ``config.data_dir = <dir>``.

The builder classes are never registered with tfds (``skip_registration=True``): nothing is added
to tfds' global registry, so no name can clash with a registered dataset or between tests, and
``tfds.builder(name, data_dir=DIR)`` loads the dataset from its files alone (tfds' read-only
builder, as for any dataset prepared elsewhere). Any process can therefore read the directory,
including subprocesses and pytest-xdist workers that never imported this module.

The content is deterministic in the spec and learnable: each class has a smooth random colour
template (a 4x4 grid of random colours, upsampled to the image size), each example is its class's
template plus Gaussian noise (std 40 of 255), as in swinjax's ``synthetic`` dataset.
:meth:`TinyImages.examples` regenerates a split's examples in memory, to compare with what was
read back (the builder shuffles examples into the files, as tfds does for real datasets).

``TinyImages(image_size=None, ...)`` makes images of varying sizes (each side in ``size_range``),
with ``encoding_format="jpeg"`` for a dataset of variable-size JPEGs.

:func:`mock_prepared` runs tfds' ``tfds.testing.mock_data`` (fake examples through the real tfds
code of a registered dataset such as ``cifar100``) over a data directory that holds the dataset's
metadata, as a prepared dataset does, so that swinjax opens it as prepared and downloads nothing.

Usage (fixtures in ``tests/conftest.py``)::

    def test_something(tiny_tfds_dir):  # TinyImages(): 16x16x3 PNGs, 4 classes, 300/70
        config = make_tiny_config(dataset=tiny_tfds_dir.name, data_dir=tiny_tfds_dir.data_dir)

    def test_other(tfds_dir_factory):  # any spec; each built once per session (per worker)
        jpegs = tfds_dir_factory(TinyImages(name="swinjax_test_jpegs", image_size=None,
                                            encoding_format="jpeg"))
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

DEFAULT_NAME = "swinjax_test_images"


@dataclasses.dataclass(frozen=True)
class TinyImages:
    """What to build. ``name`` is the tfds dataset name (unique: never a registered dataset)."""

    name: str = DEFAULT_NAME
    num_classes: int = 4
    image_size: int | None = 16  # None: each image gets its own (H, W) drawn from size_range
    size_range: tuple[int, int] = (12, 24)  # inclusive bounds of H and W when image_size is None
    channels: int = 3
    train_examples: int = 300
    test_examples: int = 70  # 0: the dataset has no test split
    encoding_format: str = "png"  # "png" (lossless) or "jpeg"
    seed: int = 0
    version: str = "1.0.0"

    @property
    def splits(self) -> dict[str, int]:
        """Split name -> number of examples (splits with no examples are left out)."""
        sizes = {"train": self.train_examples, "test": self.test_examples}
        return {k: n for k, n in sizes.items() if n > 0}

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(f"class_{k}" for k in range(self.num_classes))

    @property
    def image_shape(self) -> tuple[int | None, int | None, int]:
        """The tfds image feature's shape: (H, W, C), H and W None for variable sizes."""
        return (self.image_size, self.image_size, self.channels)

    def examples(self, split: str) -> Iterator[tuple[int, np.ndarray, int]]:
        """(index, image uint8 [H, W, C], label) of every example of ``split``, in index order."""
        n = self.splits[split]  # KeyError for a split the dataset does not have
        grid_colours = np.random.default_rng([self.seed, 7]).uniform(
            0, 255, (self.num_classes, 4, 4, self.channels)
        )  # per class, a 4 x 4 grid of colours
        rng = np.random.default_rng([self.seed, {"train": 0, "test": 1}[split]])
        low, high = self.size_range
        for i in range(n):
            label = int(rng.integers(self.num_classes))
            height, width = (
                (self.image_size, self.image_size)
                if self.image_size is not None
                else (int(s) for s in rng.integers(low, high + 1, 2))
            )
            rows, cols = np.arange(height) * 4 // height, np.arange(width) * 4 // width
            template_HWC = grid_colours[label][rows][:, cols]
            noise_HWC = rng.normal(0, 40, (height, width, self.channels))
            yield i, np.clip(template_HWC + noise_HWC, 0, 255).round().astype(np.uint8), label

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images [N, H, W, C] uint8, labels [N] int64) of a fixed-size ``split``, index order."""
        if self.image_size is None:
            raise ValueError("arrays() needs fixed-size images; use examples()")
        _, images, labels = zip(*self.examples(split), strict=True)
        return np.stack(images), np.array(labels, np.int64)


@dataclasses.dataclass(frozen=True)
class TfdsDir:
    """A built dataset: read it with ``config.dataset = name``, ``config.data_dir = data_dir``."""

    name: str
    data_dir: str
    spec: TinyImages

    @property
    def dataset_dir(self) -> Path:
        """``data_dir/name/version``: the files tfds wrote."""
        return Path(self.data_dir) / self.name / self.spec.version


def builder_class(spec: TinyImages) -> type[tfds.core.GeneratorBasedBuilder]:
    """A ``GeneratorBasedBuilder`` subclass named ``spec.name`` that writes ``spec``'s examples;
    not registered with tfds (``tfds.builder`` finds the prepared dataset by its files)."""

    class TinyImagesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = spec.name
        VERSION = tfds.core.Version(spec.version)
        RELEASE_NOTES = {spec.version: "Test data written by tests/tfds_fixture.py."}
        # No download checksums file beside the code. (tfds' own lookup of the code's path goes
        # through importlib_resources, which tfds does not install, for classes in a package.)
        code_path = None

        def _info(self) -> tfds.core.DatasetInfo:
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"swinjax test images: {spec}",
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(
                            shape=spec.image_shape,
                            dtype=np.uint8,
                            encoding_format=spec.encoding_format,
                        ),
                        "label": tfds.features.ClassLabel(names=list(spec.class_names)),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            del dl_manager  # nothing to download
            return {split: self._generate_examples(split) for split in spec.splits}

        def _generate_examples(self, split: str):
            for i, image, label in spec.examples(split):
                yield i, {"image": image, "label": label}

    return TinyImagesBuilder


TINY = TinyImages()  # the default: what the ``tiny_tfds_dir`` fixture holds


def build(data_dir: str | Path, spec: TinyImages = TINY) -> TfdsDir:
    """Writes ``spec`` as tfds dataset ``spec.name`` into ``data_dir`` (offline); reuses it if
    that version is already there."""
    data_dir = Path(data_dir)
    builder = builder_class(spec)(data_dir=str(data_dir))
    builder.download_and_prepare(
        download_dir=str(data_dir / "downloads"),
        download_config=tfds.download.DownloadConfig(
            try_download_gcs=False,  # never ask GCS for a prepared copy (no network)
            compute_stats=tfds.download.ComputeStatsMode.SKIP,
        ),
    )
    return TfdsDir(name=spec.name, data_dir=str(data_dir), spec=spec)


@contextlib.contextmanager
def mock_prepared(data_dir: str | Path, name: str, num_examples: int) -> Iterator[str]:
    """``tfds.testing.mock_data(num_examples)`` over the registered dataset ``name``, whose
    metadata (features and class names, no split sizes: the mock makes ``num_examples`` examples
    of any split) is first written into ``data_dir`` as tfds writes it when preparing: tfds'
    ``is_prepared()`` then holds, so the dataset opens as prepared (no download, no probe).
    Yields ``data_dir`` (the mock reads the metadata there whatever ``data_dir`` a caller
    passes)."""
    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.data_path.mkdir(parents=True, exist_ok=True)
    builder.info.write_to_directory(builder.data_path)
    with tfds.testing.mock_data(num_examples=num_examples, data_dir=str(data_dir)):
        yield str(data_dir)
