"""The exact (erf) GELU of PyTorch and Keras, with a hand-written VJP (the ``cpu`` kernel set) and
without (``reference``): the same forward values, bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


@jax.custom_vjp
def gelu(x: jnp.ndarray) -> jnp.ndarray:
    """Exact (erf) GELU, 0.5 x (1 + erf(x / sqrt 2)) as PyTorch and Keras write it, whose
    backward pass recomputes Phi(x) and phi(x) from x.

    Autodiff of ``nn.gelu(x, approximate=False)`` keeps erf and exp intermediates of the full
    MLP width alive from the forward to the backward pass; here the forward is one fused pass
    that writes only the output, and the backward one fused pass over x and the incoming gradient.
    """
    return gelu_reference(x)


def gelu_reference(x: jnp.ndarray) -> jnp.ndarray:
    """The same function, differentiated by JAX (the ``reference`` kernel set)."""
    x32 = x.astype(jnp.float32)
    return (0.5 * x32 * (1.0 + jax.lax.erf(x32 * np.float32(np.sqrt(0.5))))).astype(x.dtype)


def _gelu_fwd(x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    return gelu_reference(x), x


def _gelu_bwd(x: jnp.ndarray, g: jnp.ndarray) -> tuple[jnp.ndarray]:
    x32 = x.astype(jnp.float32)
    # erf is odd: written on -x, XLA does not merge it with the forward's erf(x), which would
    # keep a full-width erf array alive from the forward to the backward pass.
    cdf = 0.5 * (1.0 - jax.lax.erf(-x32 * np.float32(np.sqrt(0.5))))
    pdf = jnp.exp(-0.5 * x32 * x32) * np.float32(1.0 / np.sqrt(2.0 * np.pi))
    return ((g.astype(jnp.float32) * (cdf + x32 * pdf)).astype(x.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)
