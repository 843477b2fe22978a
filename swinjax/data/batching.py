"""The arithmetic of batches, shared by every kind of split: full steps per epoch, the epoch's
order, batch sizes that divide over devices, and the rows of each global batch that a process
reads in a multi-host run.
"""

from __future__ import annotations

import jax
import numpy as np

from swinjax.errors import ConfigError


def check_batch_size(
    batch_size: int, num_devices: int, key: str = "batch_size", unit: str = "devices"
) -> None:
    """Raises ValueError, naming a batch size that works, unless ``num_devices`` divides it."""
    if num_devices < 1:
        raise ConfigError(f"the number of {unit} must be >= 1, got {num_devices}")
    if batch_size % num_devices:
        fit = batch_size // num_devices * num_devices or num_devices
        raise ConfigError(
            f"{key} {batch_size} is not divisible by {num_devices} {unit}; use --config.{key}={fit}"
        )


def padded_batch_size(batch_size: int, num_devices: int) -> int:
    """``batch_size`` rounded up to a multiple of ``num_devices`` (evaluation pads and masks)."""
    return -(-batch_size // num_devices) * num_devices


def process_rows(
    batch_size: int, process_index: int | None = None, process_count: int | None = None
) -> slice:
    """The rows of each global batch of ``batch_size`` that this process reads: one contiguous,
    disjoint block per process (``batch_size`` must be divisible by the process count)."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise ConfigError(f"process_index {index} is outside [0, {count})")
    check_batch_size(batch_size, count, unit="processes")
    local = batch_size // count
    return slice(index * local, (index + 1) * local)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (training drops the last partial batch)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return num_examples // batch_size


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of ``epoch``: a pure function of (num_examples, seed, epoch)."""
    entropy = [int(seed) % 2**64, int(epoch) % 2**64, 0x5117]  # any int seed, even negative
    return np.random.default_rng(entropy).permutation(num_examples)
