"""Scoring a train state on a whole split: every example counted once, padding masked out."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from swinjax import data, parallel, steps


def evaluate(
    state: Any, split: data.Split, batch_size: int, mesh: Mesh | None = None
) -> dict[str, float]:
    """Mean loss, top-1 and top-5 over all of ``split``, plus ``num_examples``.

    Data parallel over ``mesh`` (default: every device): the state is replicated, each batch
    split across the devices, ``batch_size`` rounded up to a multiple of the device count (the
    extra rows are padding, masked out). ``steps.eval_step`` returns per-batch sums over the real
    (mask = 1) rows; they are added up on the device and fetched once, at the end.
    """
    mesh = parallel.make_mesh() if mesh is None else mesh
    state = parallel.replicate(state, mesh)
    batch_size = parallel.padded_batch_size(batch_size, mesh.size)
    batches = data.eval_batches(
        split, batch_size, process_index=jax.process_index(), process_count=jax.process_count()
    )
    totals = None
    for batch in data.prefetch_to_device(batches, size=2, sharding=parallel.batch_sharding(mesh)):
        sums = steps.eval_step(state, batch)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
        raise ValueError(f"split {split.name!r} is empty; nothing to evaluate")
    totals = jax.device_get(totals)
    count = float(totals["count"])
    if count != split.num_examples:
        raise AssertionError(f"evaluated {count} examples of {split.num_examples}")
    return {
        "loss": float(totals["loss"]) / count,
        "top1": float(totals["top1"]) / count,
        "top5": float(totals["top5"]) / count,
        "num_examples": int(count),
    }


def predict_samples(state: Any, split: data.Split, n: int) -> tuple[np.ndarray, ...]:
    """The first ``n`` images of ``split``, their labels and the model's predictions."""
    n = min(n, split.num_examples)
    images = split.images[:n]
    logits = steps.predict(state, jnp.asarray(images))
    return images, split.labels[:n], np.asarray(jax.device_get(logits)).argmax(-1)
