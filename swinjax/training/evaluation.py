"""Scoring a train state on a whole split: every example counted once, padding masked out.

One implementation for one model and for a population (a state with a leading member axis,
:mod:`swinjax.training.population`): ``steps.eval_step`` maps over the members itself.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from swinjax import data
from swinjax.data.batching import padded_batch_size
from swinjax.training import parallel, population, steps


def evaluate(
    state: Any,
    split: data.Split,
    batch_size: int,
    mesh: Mesh | None = None,
    tta: bool = False,
    tta_shift: int = 0,
) -> dict[str, float] | list[dict[str, float]]:
    """Mean ``loss``, ``top1`` and ``top5`` over all of ``split``, plus ``num_examples``; for a
    population, a list of such dicts, one per member. ``tta``: flip test-time augmentation, with
    translated views where ``tta_shift`` > 0 (``steps.tta_views``).

    Data parallel over ``mesh`` (default: every device): the state is replicated, each batch
    split across the devices, ``batch_size`` rounded up to a multiple of the device count (the
    extra rows are padding, masked out). ``steps.eval_step`` returns per-batch sums over the real
    (mask = 1) rows; they are added up on the device and fetched once, at the end.
    """
    mesh = parallel.make_mesh() if mesh is None else mesh
    state = parallel.replicate(state, mesh)
    batch_size = padded_batch_size(batch_size, mesh.size)
    batches = data.eval_batches(
        split, batch_size, process_index=jax.process_index(), process_count=jax.process_count()
    )
    totals = None
    for batch in data.prefetch_to_device(batches, size=2, sharding=parallel.batch_sharding(mesh)):
        sums = steps.eval_step(state, batch, tta=tta, tta_shift=tta_shift)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
        raise ValueError(f"split {split.name!r} is empty; nothing to evaluate")
    totals_P = {
        k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in jax.device_get(totals).items()
    }
    members = [_means(totals_P, i, split) for i in range(population.size(state))]
    return members if state.step.ndim else members[0]


def evaluate_with_ema(
    state: Any,
    split: data.Split,
    batch_size: int,
    mesh: Mesh | None = None,
    tta: bool = False,
    tta_shift: int = 0,
) -> dict[str, float] | list[dict[str, float]]:
    """:func:`evaluate` of the parameters and, where the state keeps an EMA of them
    (``state.ema_params``), of the EMA too: ``ema_loss``, ``ema_top1``, ``ema_top5`` beside
    ``loss``, ``top1``, ``top5``."""
    raw = evaluate(state, split, batch_size, mesh, tta, tta_shift)
    if state.ema_params is None:
        return raw
    ema = evaluate(state.replace(params=state.ema_params), split, batch_size, mesh, tta, tta_shift)

    def merged(r: dict[str, float], e: dict[str, float]) -> dict[str, float]:
        return {**r, **{f"ema_{k}": v for k, v in e.items() if k != "num_examples"}}

    if isinstance(raw, list):
        return [merged(r, e) for r, e in zip(raw, ema, strict=True)]
    return merged(raw, ema)


def _means(totals_P: dict[str, np.ndarray], i: int, split: data.Split) -> dict[str, float]:
    count = float(totals_P["count"][i])
    if count != split.num_examples:
        raise AssertionError(f"evaluated {count} examples of {split.num_examples}")
    scores = {k: float(totals_P[k][i]) / count for k in ("loss", "top1", "top5")}
    return {**scores, "num_examples": int(count)}


def predict_samples(state: Any, split: Any, n: int) -> tuple[np.ndarray, ...]:
    """The first ``n`` images of ``split`` (as evaluation reads them), their labels and the
    model's predictions."""
    n = min(n, split.num_examples)
    batch = next(data.eval_batches(split, max(n, 1)))
    images, labels = batch["image"][:n], batch["label"][:n]
    logits = steps.predict(state, jnp.asarray(images))
    return images, labels, np.asarray(jax.device_get(logits)).argmax(-1)
