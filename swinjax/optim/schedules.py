"""Learning-rate schedules as functions of the step and array hyperparameters, so that no value
of the peak, the warmup, the length or the final rate recompiles the train step.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

SCHEDULES = ("constant", "warmup_cosine", "warmup_linear", "one_cycle")
# one_cycle starts at peak / 25 (PyTorch's OneCycleLR and fast.ai's div_factor).
ONE_CYCLE_START = 1.0 / 25.0


def learning_rate_at(step: jax.Array, hparams: dict[str, jax.Array], schedule: str) -> jax.Array:
    """The learning rate of optimizer step ``step`` (0-based), from array hyperparameters: the
    peak ``learning_rate``, ``warmup_steps``, ``total_steps`` (the whole budget, num_epochs'
    steps) and ``min_lr`` (where the decay ends), so no value of them recompiles.

    - ``warmup_cosine``: ``lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps
      (no wasted step at lr 0; the peak is reached at step ``warmup_steps - 1``), then a cosine
      from ``lr`` down to ``min_lr`` at ``total_steps``, held there after;
    - ``warmup_linear``: the same warmup, then a straight line from ``lr`` down to ``min_lr``
      (0 by default: zero at the end of the budget);
    - ``one_cycle`` (fast.ai / PyTorch's OneCycleLR, learning rate only): a half-cosine rise
      from ``lr / 25`` at step 0 to ``lr`` at ``warmup_steps`` (the cycle's fraction is
      ``warmup_epochs / num_epochs``), then the cosine down to ``min_lr`` (~0).
    """
    peak = hparams["learning_rate"]
    if schedule == "constant":
        return peak
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one of {SCHEDULES}")
    s = jnp.asarray(step).astype(jnp.float32)
    warm, total, low = hparams["warmup_steps"], hparams["total_steps"], hparams["min_lr"]
    warmup_lr = peak * (s + 1.0) / jnp.maximum(warm, 1.0)
    progress = jnp.clip((s - warm) / jnp.maximum(total - warm, 1.0), 0.0, 1.0)
    if schedule == "warmup_linear":
        return jnp.where(s < warm, warmup_lr, low + (peak - low) * (1.0 - progress))
    cosine_lr = low + (peak - low) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
    if schedule == "one_cycle":
        start = peak * ONE_CYCLE_START
        rise = 0.5 * (1.0 - jnp.cos(math.pi * s / jnp.maximum(warm, 1.0)))
        warmup_lr = start + (peak - start) * rise
    return jnp.where(s < warm, warmup_lr, cosine_lr)
