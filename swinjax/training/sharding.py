"""Where the train state lives: replicated on every device, or sharded (``fsdp``).

``config.sharding``: ``"replicated"`` (a full copy of the state on every device, plain data
parallel) or ``"fsdp"`` (ZeRO-3 style, as big_vision's ``fsdp(axis="data")``): every array of the
train state (parameters, optimizer moments, EMA) is split over the mesh's data axis along its
largest dimension that the number of devices divides; an array with no such dimension, or smaller
than :data:`MIN_SHARDED_SIZE` elements, stays replicated. The jitted step is unchanged: it takes
the shardings of its inputs and XLA inserts the all-gathers of the parameters and the
reduce-scatters of the gradients. Batches are split along the data axis as before.

A checkpoint holds global arrays, so it restores into any of these layouts on any number of
devices: the restore is given the current run's state, placed by :func:`place`. ``fsdp`` is one
process only for now (the config's validation refuses it with ``distributed=True``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from swinjax.training import parallel

MODES = ("replicated", "fsdp")
MIN_SHARDED_SIZE = 2**12  # arrays smaller than this stay replicated: gathering them costs more

Tree = TypeVar("Tree")


def sharded_axis(shape: tuple[int, ...], num_devices: int) -> int | None:
    """The axis ``fsdp`` splits an array of ``shape`` along over ``num_devices``: its largest
    dimension that ``num_devices`` divides (the last of equals), or None (stays replicated)."""
    size = 1
    for d in shape:
        size *= d
    if num_devices <= 1 or size < MIN_SHARDED_SIZE:
        return None
    best = None
    for axis, d in enumerate(shape):
        if d % num_devices == 0 and (best is None or d >= shape[best]):
            best = axis
    return best


def partition_spec(shape: tuple[int, ...], num_devices: int, mode: str) -> PartitionSpec:
    """The ``PartitionSpec`` of one array of ``shape`` under ``mode`` (see :data:`MODES`)."""
    if mode not in MODES:
        raise ValueError(f"sharding mode {mode!r} is not one of {MODES}")
    axis = sharded_axis(tuple(shape), num_devices) if mode == "fsdp" else None
    if axis is None:
        return PartitionSpec()
    return PartitionSpec(*([None] * axis), parallel.DATA_AXIS)


def state_shardings(state: Any, mesh: Mesh, mode: str) -> Any:
    """A pytree like ``state`` of ``NamedSharding`` over ``mesh`` for ``mode``: replicated, or
    each array along its largest dimension divisible by the mesh's size (``fsdp``)."""

    def one(x: Any) -> NamedSharding:
        shape = () if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x.shape
        return NamedSharding(mesh, partition_spec(shape, mesh.size, mode))

    return jax.tree.map(one, state)


def place(state: Tree, mesh: Mesh, mode: str) -> Tree:
    """``state`` put on ``mesh`` with :func:`state_shardings` (``replicated``:
    :func:`parallel.replicate`, which also serves several processes)."""
    if mode == "replicated":
        return parallel.replicate(state, mesh)
    if jax.process_count() > 1:
        raise ValueError("sharding='fsdp' is single-process for now; use 'replicated'")
    return jax.device_put(state, state_shardings(state, mesh, mode))
