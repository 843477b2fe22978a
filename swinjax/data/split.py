"""What every split is: the :class:`Split` protocol that callers type against, and the two batch
functions over it (:func:`train_batches`, :func:`eval_batches`).

Two kinds implement it: :class:`swinjax.data.in_memory.InMemorySplit` (uint8 arrays in host
memory; the synthetic dataset is one) and :class:`swinjax.data.stream.StreamedSplit` (tf.data
over tfds record files or an image folder, decoded as it streams).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Split(Protocol):
    """One split of a dataset, yielding numpy batches of this process's rows."""

    @property
    def name(self) -> str:
        """``"dataset:spec"``, e.g. ``"cifar100:train[:90%]"``."""

    @property
    def num_classes(self) -> int:
        """Labels lie in [0, num_classes)."""

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per class, or ``()`` where the dataset has none."""

    @property
    def num_examples(self) -> int:
        """Examples in the split."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the images in the batches."""

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full training batches of ``batch_size`` (global) per epoch."""

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
        """Shuffled full batches of ``epoch`` from ``start_step`` on: see :func:`train_batches`."""

    def eval_batches(
        self, batch_size: int, *, process_index: int = 0, process_count: int = 1
    ) -> Iterator[dict[str, np.ndarray]]:
        """Every example once, padded and masked: see :func:`eval_batches`."""

    def head(self, num_examples: int) -> Split:
        """A split of the same kind holding ``num_examples`` of this one's first examples."""


def train_batches(
    split: Split,
    batch_size: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Shuffled full batches ``{"image": uint8 [B,H,W,C], "label": int32 [B]}`` of ``epoch``,
    from batch ``start_step`` on (resume); the last partial batch is dropped. The order is a pure
    function of (seed, epoch), so a resumed epoch yields exactly the batches of an uninterrupted
    one. ``batch_size`` is the global batch; with ``process_count`` > 1 (multi-host) each process
    gets only its rows of every batch: the processes' blocks are disjoint and together make up
    the global batch.
    """
    yield from split.train_batches(
        batch_size,
        seed,
        epoch,
        start_step,
        process_index=process_index,
        process_count=process_count,
    )


def eval_batches(
    split: Split, batch_size: int, *, process_index: int = 0, process_count: int = 1
) -> Iterator[dict[str, np.ndarray]]:
    """Every example exactly once, in order, as ``{"image", "label", "mask": float32 [B]}``:
    all batches of ``batch_size`` rows (one compiled shape), the last padded with zero images
    and label 0 (``mask`` 0.0); with ``process_count`` > 1 each process gets its rows of every
    (padded) global batch, and every process yields the same number of batches.
    """
    yield from split.eval_batches(
        batch_size, process_index=process_index, process_count=process_count
    )
