"""Populations: P train states that share every input batch, stepped as one program.

A population is P :class:`~swinjax.training.state.TrainState` s stacked leaf by leaf along a new
leading axis. The members must share their static recipe (model, optimizer, schedule, augmentation:
one compiled program); what lives in arrays may differ: ``hparams`` (learning rate, weight decay,
label smoothing, ...), ``rng`` (the seed) and so the parameters.

There is no second implementation of anything: ``steps.train_step`` / ``steps.eval_step`` and
``evaluation.evaluate`` take a stacked state as they take one model's, and map over the leading
axis. Member ``i`` computes what ``steps.train_step`` computes for it alone (up to float
rounding: XLA batches the P models' matrix products).

    pop = population.stack([state_a, state_b])              # every array leaf: [P, ...]
    pop, metrics = steps.train_step(pop, batch)              # metrics: {name: [P]}
    scores = evaluation.evaluate(pop, val_split, 256)        # one dict per member
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from swinjax.training.state import TrainState


def stack(states: Sequence[TrainState]) -> TrainState:
    """One population state whose array leaves are ``[P, ...]``: member ``i`` is ``states[i]``.

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


def size(state: TrainState) -> int:
    """P, the number of members of a population; 1 for a single model's state."""
    return int(state.step.shape[0]) if state.step.ndim else 1
