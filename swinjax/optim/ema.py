"""The exponential moving average (EMA) of the parameters, bias-corrected.

EMA. After optimizer step ``t`` (1-based), ``ema = d_t ema + (1 - d_t) params`` with the
bias-corrected decay ``d_t = d (1 - d^(t-1)) / (1 - d^t)``: the EMA is the average of the
parameters after steps 1..t with weights proportional to ``d^(t-k)``, exactly, from the first
step on (``d_1 = 0``: ema = params). Chosen over timm's ModelEmaV3 warmup (``1 - (1 + t/gamma)
^-power``) because it has no hyperparameter of its own, never weighs the random initialization
(or an ``init_from`` start) at all, and is a pure function of the step already in the state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def ema_update(ema: Any, params: Any, count: jax.Array, decay: jax.Array) -> Any:
    """The bias-corrected EMA after optimizer step ``count`` (1-based; see the module
    docstring): ``d_t ema + (1 - d_t) params``, ``d_t = d (1 - d^(t-1)) / (1 - d^t)``."""
    t = jnp.asarray(count).astype(jnp.float32)
    log_d = jnp.log(jnp.maximum(decay, 1e-30))
    # 1 - d^t as -expm1(t log d): accurate where d is close to 1.
    d_t = jnp.where(decay > 0, decay * jnp.expm1((t - 1) * log_d) / jnp.expm1(t * log_d), 0.0)
    return jax.tree.map(lambda e, p: (d_t * e + (1.0 - d_t) * p).astype(e.dtype), ema, params)
