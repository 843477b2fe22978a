"""Population training: K train states that share every input batch, stepped as one program.

A population is K :class:`~swinjax.steps.TrainState` s stacked leaf by leaf along a new leading
axis (:func:`stack`). The members must share their static recipe (model, optimizer, schedule,
augmentation: one compiled program); what lives in arrays may differ: ``hparams`` (learning
rate, weight decay, label smoothing, ...), ``rng`` (the seed) and so the parameters.

``train_step`` is ``steps._train_step`` under ``jax.vmap`` over the states, the batch broadcast
to every member, jitted once at module level with the population donated; ``eval_step`` is
``steps._eval_step`` likewise. Member ``i`` of a population computes what ``steps.train_step``
computes for it alone (up to float rounding: XLA batches the K models' matrix products).

    pop = population.stack([state_a, state_b])              # every array leaf: [K, ...]
    pop, metrics = population.train_step(pop, batch)         # metrics: {name: [K]}
    scores = population.evaluate(pop, val_split, 256)        # one dict per member
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from swinjax import data, steps
from swinjax.steps import TrainState


def stack(states: Sequence[TrainState]) -> TrainState:
    """One population state whose array leaves are ``[K, ...]``: member ``i`` is ``states[i]``.

    Raises ValueError if the states differ in their static recipe (they would need different
    programs) or in their shapes.
    """
    if not states:
        raise ValueError("a population needs at least one train state")
    first = jax.tree.structure(states[0])
    for i, state in enumerate(states[1:], start=1):
        if jax.tree.structure(state) != first:
            raise ValueError(
                f"population member {i} differs from member 0 in its static recipe (model, "
                "optimizer, schedule or augmentation); only hyperparameters in state.hparams and "
                "the seed may vary inside a population"
            )
    shapes = [[x.shape for x in jax.tree.leaves(s)] for s in states]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("population members have different parameter shapes")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def size(population: TrainState) -> int:
    """K, the number of members."""
    return int(population.step.shape[0])


def member(population: TrainState, i: int) -> TrainState:
    """Member ``i`` as an ordinary train state (its array leaves without the ``K`` axis)."""
    return jax.tree.map(lambda x: x[i], population)


def _population_train_step(
    population: TrainState, batch: dict[str, jax.Array]
) -> tuple[TrainState, dict[str, jax.Array]]:
    """``steps._train_step`` for every member on the same ``batch``; metrics are ``[K]``."""
    return jax.vmap(steps._train_step, in_axes=(0, None))(population, batch)


train_step = jax.jit(_population_train_step, donate_argnums=0)


def _population_eval_step(
    population: TrainState, batch: dict[str, jax.Array]
) -> dict[str, jax.Array]:
    """``steps._eval_step`` for every member on the same ``batch``: sums of shape ``[K]``."""
    return jax.vmap(steps._eval_step, in_axes=(0, None))(population, batch)


eval_step = jax.jit(_population_eval_step)


def evaluate(population: TrainState, split: data.Split, batch_size: int) -> list[dict[str, float]]:
    """Per member, what ``evaluation.evaluate`` returns for it alone: mean ``loss``, ``top1``,
    ``top5`` over all of ``split`` (padding masked out) and ``num_examples``.

    Sums are added up on the device and fetched once, at the end.
    """
    totals = None
    for batch in data.prefetch_to_device(data.eval_batches(split, batch_size), size=2):
        sums = eval_step(population, batch)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
        raise ValueError(f"split {split.name!r} is empty; nothing to evaluate")
    totals = jax.device_get(totals)
    results = []
    for i in range(size(population)):
        count = float(totals["count"][i])
        if count != split.num_examples:
            raise AssertionError(f"evaluated {count} examples of {split.num_examples}")
        results.append(
            {
                "loss": float(totals["loss"][i]) / count,
                "top1": float(totals["top1"][i]) / count,
                "top5": float(totals["top5"][i]) / count,
                "num_examples": int(count),
            }
        )
    return results
