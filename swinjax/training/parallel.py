"""Data parallelism over every device, of one host or many, with ``jax.sharding``.

One mesh axis, ``"data"``, over all devices: a batch's leading axis is split across them
(``NamedSharding(mesh, P("data"))``) and the train state is replicated (``P()``). The jitted steps
(``steps.train_step`` / ``steps.eval_step``) are not changed: ``jax.jit`` takes the shardings of
its inputs, and XLA's partitioner inserts the all-reduce of the gradients and of the metrics. One
device is a 1-device mesh, the same code path.

The mesh's axis is ``AxisType.Auto`` (the compiler propagates shardings). ``jax.make_mesh``
defaults to ``Explicit`` axes, under which shardings are part of the array types and the model's
window partition (a reshape that splits and merges the sharded batch axis with others) is refused.

Multi-host: with ``config.distributed`` (``--config.distributed=True``) every process calls
:func:`initialize_distributed` before anything touches a device, then the mesh spans the devices of
all processes. Each process reads only its own rows of each global batch
(:func:`swinjax.data.batching.process_rows`; ``data.train_batches`` / ``data.eval_batches`` take
``process_index`` and ``process_count``) and :func:`put_batch` assembles the global array from them
with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

Tree = TypeVar("Tree")


def initialize_distributed(enabled: bool) -> bool:
    """Starts ``jax.distributed`` (once) when ``enabled``; returns whether it is on.

    Call it before anything touches a device. ``jax.distributed.initialize()`` finds the
    coordinator, the number of processes and this process's id on Slurm, Open MPI and Cloud TPU;
    elsewhere set ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` in each process's environment.
    """
    if not enabled:
        return jax.distributed.is_initialized()
    if not jax.distributed.is_initialized():
        env = {
            "coordinator_address": os.environ.get("JAX_COORDINATOR_ADDRESS"),
            "num_processes": os.environ.get("JAX_NUM_PROCESSES"),
            "process_id": os.environ.get("JAX_PROCESS_ID"),
        }
        kwargs: dict[str, Any] = {k: v for k, v in env.items() if v}
        for key in ("num_processes", "process_id"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
        jax.distributed.initialize(**kwargs)
    return True


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh, axis ``"data"``, over ``devices`` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device")
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split across the mesh's devices."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def put_batch(batch: Tree, sharding: NamedSharding | Mesh) -> Tree:
    """Global arrays, sharded along the batch axis, from this process's rows of a batch.

    With one process the rows are the whole batch and this is ``jax.device_put``; with several,
    ``jax.make_array_from_process_local_data`` assembles each global array from every process's
    rows without any host seeing them all.
    """
    if isinstance(sharding, Mesh):
        sharding = batch_sharding(sharding)
    return jax.make_array_from_process_local_data(sharding, batch)


def replicate(tree: Tree, mesh: Mesh) -> Tree:
    """``tree`` (e.g. a train state, the same on every process) copied to every mesh device.

    One process: ``jax.device_put``, device to device. Several: :func:`replicate_from_processes`.
    """
    sharding = replicated_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return replicate_from_processes(tree, sharding)


def replicate_from_processes(tree: Tree, sharding: NamedSharding) -> Tree:
    """Global replicated arrays built from each process's identical local copy of ``tree``,
    through the host (``jax.make_array_from_process_local_data``); typed PRNG keys travel as
    their key data. Leaves that already have ``sharding`` stay as they are."""

    def to_global(x: Any) -> Any:
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = to_global(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(to_global, tree)


def is_main_process() -> bool:
    """True in process 0, the one that writes logs, metrics and plots."""
    return jax.process_index() == 0


def bytes_per_device(tree: Tree) -> int:
    """Bytes of ``tree``'s arrays held by one device: the sum of each array's first addressable
    shard (the whole array where it is replicated, a slice where it is sharded)."""
    return sum(
        int(leaf.addressable_shards[0].data.nbytes)
        for leaf in jax.tree.leaves(tree)
        if isinstance(leaf, jax.Array)
    )
