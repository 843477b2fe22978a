"""Image classification data from tfds or image folders, fed to the device in batches.

Any tfds dataset with an ``image`` and a class ``label`` feature works (``cifar100``,
``cifar10``, ``mnist`` with C=1, ``imagenette``, ...), a folder of your own images
(``imagefolder:/path``, :mod:`.sources`), plus ``synthetic``, an offline dataset for demos
and tests. A tfds dataset that is not prepared is downloaded first (``config.download``).

Two pipelines with one contract (:func:`train_batches`, :func:`eval_batches`):

- ``memory`` (:class:`.in_memory.Split`): the split read once into uint8 arrays in host memory
  and cached in the process; the host only gathers rows. The fastest for datasets that fit (CIFAR).
- ``stream`` (:class:`.stream.StreamSplit`): tf.data over the tfds record files, for
  splits larger than memory and for images of varying size (decoded, random-resized-cropped or
  center-cropped to the model's size on the host).

``config.input_pipeline = "auto"`` picks ``memory`` when the images have one size and the split
decoded fits in ``config.memory_budget_gb``, else ``stream``. Training order is a pure function
of (seed, epoch), so a run resumed at (epoch, step) sees exactly the batches an uninterrupted one
would. Augmentation runs on the device (:mod:`swinjax.augment`).

Modules: :mod:`.sources` (tfds builders, image folders, split strings), :mod:`.in_memory` and
:mod:`.synthetic` (in-memory splits), :mod:`.stream` and :mod:`.preprocess` (the streaming
pipeline and its host-side crops), :mod:`.splits` (a config's splits), :mod:`.batching` (batch
arithmetic), :mod:`.prefetch` (batches on the device ahead of the step).

May import: :mod:`swinjax.network`, :mod:`swinjax.errors` and the libraries (numpy, tfds,
TensorFlow, jax for device placement); not models, training or the programs.
"""

from swinjax.data.batching import epoch_permutation, steps_per_epoch
from swinjax.data.in_memory import Split, load_tfds_split
from swinjax.data.prefetch import prefetch_to_device
from swinjax.data.sources import IMAGEFOLDER, SYNTHETIC
from swinjax.data.splits import (
    clear_cache,
    eval_batches,
    load_split,
    load_splits,
    parse_classes,
    select_classes,
    train_batches,
)
from swinjax.data.synthetic import synthetic_split

__all__ = [
    "IMAGEFOLDER",
    "SYNTHETIC",
    "Split",
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
