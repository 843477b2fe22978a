"""The built-in synthetic dataset: offline data with a learnable signal, for demos and tests
(``config.dataset = "synthetic"``), an :class:`~swinjax.data.in_memory.InMemorySplit`.
"""

from __future__ import annotations

import functools

import numpy as np

from swinjax.data.in_memory import InMemorySplit, frozen_split
from swinjax.data.sources import SYNTHETIC, split_ranges
from swinjax.errors import ConfigError

_CACHE_SIZE = 8


@functools.lru_cache(maxsize=_CACHE_SIZE)
def synthetic_split(
    spec: str,
    num_classes: int = 10,
    image_size: int = 16,
    channels: int = 3,
    train_examples: int = 1200,
    test_examples: int = 300,
    seed: int = 0,
) -> InMemorySplit:
    """Offline data with a learnable signal, deterministic in (seed, sizes).

    Each class has a smooth random colour template (a 4x4 grid of random colours, upsampled);
    an example is its class's template plus Gaussian noise (std 40 of 255). The splits are
    ``train`` and ``test``, sliced like tfds splits (``train[:90%]``).
    """
    if min(num_classes, image_size, channels, train_examples, test_examples) < 1:
        raise ConfigError("synthetic dataset sizes must all be >= 1")
    sizes = {"train": train_examples, "test": test_examples}
    ranges = split_ranges(SYNTHETIC, spec, sizes)
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
    return frozen_split(
        np.concatenate(images),
        np.concatenate(labels),
        f"{SYNTHETIC}:{spec}",
        num_classes,
        tuple(f"class_{i}" for i in range(num_classes)),
    )
