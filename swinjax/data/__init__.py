"""Image classification data from tfds or image folders, fed to the device in batches.

Any tfds dataset with an ``image`` and a class ``label`` feature works (``cifar100``,
``cifar10``, ``mnist`` with C=1, ``imagenette``, ...), a folder of your own images
(``imagefolder:/path``, :mod:`.sources`), plus ``synthetic``, an offline dataset for demos
and tests. A tfds dataset that is not prepared is downloaded first (``config.download``).

Every split is a :class:`Split` (the protocol callers type against: name, classes, image shape,
``steps_per_epoch``, ``train_batches``, ``eval_batches``, ``head``), of one of two kinds:

- :class:`InMemorySplit` (``memory`` pipeline): the split read once into uint8 arrays in host
  memory and cached in the process; the host only gathers rows. The fastest for datasets that
  fit (CIFAR). The synthetic dataset is one.
- :class:`StreamedSplit` (``stream`` pipeline): tf.data over the tfds record files or an image
  folder's files, for splits larger than memory and for images of varying size (decoded,
  random-resized-cropped or center-cropped to the model's size on the host).

``config.input_pipeline = "auto"`` picks ``memory`` when the images have one size and the split
decoded fits in ``config.memory_budget_gb``, else ``stream``. Training order is a pure function
of (seed, epoch), so a run resumed at (epoch, step) sees exactly the batches an uninterrupted one
would. Augmentation runs on the device (:mod:`swinjax.augment`).

Modules: :mod:`.split` (the protocol), :mod:`.sources` (tfds builders, image folders, the one
check of split strings), :mod:`.loading` (a config's splits: pipeline choice, class subsets),
:mod:`.classes` (class subsets), :mod:`.in_memory` and :mod:`.synthetic` (in-memory splits),
:mod:`.stream`, :mod:`.shards` and :mod:`.preprocess` (the streaming pipeline, its data shards
and its host-side crops), :mod:`.image_files` and :mod:`.screening` (finding image files, and
the unreadable ones an image folder's split leaves out or refuses: ``config.bad_images``),
:mod:`.batching` (batch arithmetic), :mod:`.prefetch` (batches on the device ahead of the step).

May import: :mod:`swinjax.network`, :mod:`swinjax.errors` and the libraries (numpy, tfds,
TensorFlow, jax for device placement); not models, training or the programs.
"""

from swinjax.data.batching import epoch_permutation, steps_per_epoch
from swinjax.data.classes import parse_classes
from swinjax.data.in_memory import InMemorySplit, load_tfds_split, select_classes
from swinjax.data.loading import clear_cache, load_split, load_splits
from swinjax.data.prefetch import prefetch_to_device
from swinjax.data.sources import IMAGEFOLDER, SYNTHETIC
from swinjax.data.split import Split, eval_batches, train_batches
from swinjax.data.stream import StreamedSplit
from swinjax.data.synthetic import synthetic_split

__all__ = [
    "IMAGEFOLDER",
    "SYNTHETIC",
    "InMemorySplit",
    "Split",
    "StreamedSplit",
    "clear_cache",
    "epoch_permutation",
    "eval_batches",
    "load_split",
    "load_splits",
    "load_tfds_split",
    "parse_classes",
    "prefetch_to_device",
    "select_classes",
    "steps_per_epoch",
    "synthetic_split",
    "train_batches",
]
