"""Token-wise linear layers: ``nn.Dense`` with a matrix product whose gradients compile well.

Every linear layer of the model maps each token's channels independently: (..., I) @ (I, O).
:func:`dot_general` (passed to ``nn.Dense``, so parameter names, initialisers and dtype
promotion stay flax's) flattens the tokens to one (R, I) matrix and gives the product a
hand-written VJP:

- the weight gradient contracts one token axis, not (B, H, W): contracting several made XLA's
  CPU backend transpose the activations and call a generic kernel;
- it is computed with the larger of I and O as the output's minor dimension (x^T g, or
  (g^T x)^T), the faster GEMM layout on CPUs for these skinny products.

The math is unchanged: dx = g W^T and dW = x^T g. What each change saved:
docs/performance.md ("Measurements behind the cpu kernel set").
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_RI_IO = (((1,), (0,)), ((), ()))  # (R, I) @ (I, O)
_RO_IO = (((1,), (1,)), ((), ()))  # (R, O) @ (I, O)^T
_RI_RO = (((0,), (0,)), ((), ()))  # (R, I)^T @ (R, O)


@jax.custom_vjp
def tokenwise_matmul(x_RI: jax.Array, w_IO: jax.Array) -> jax.Array:
    """(R, I) @ (I, O) with the VJP described in the module docstring."""
    return lax.dot_general(x_RI, w_IO, _RI_IO)


def _matmul_fwd(x_RI: jax.Array, w_IO: jax.Array) -> tuple[jax.Array, tuple]:
    return tokenwise_matmul(x_RI, w_IO), (x_RI, w_IO)


def _matmul_bwd(residuals: tuple, g_RO: jax.Array) -> tuple[jax.Array, jax.Array]:
    x_RI, w_IO = residuals
    n_in, n_out = w_IO.shape
    dx_RI = lax.dot_general(g_RO, w_IO.astype(g_RO.dtype), _RO_IO)
    if n_in <= n_out:
        dw_IO = lax.dot_general(x_RI.astype(g_RO.dtype), g_RO, _RI_RO)
    else:
        # The barrier keeps XLA from folding the (tiny) transpose back into the product.
        dw_IO = lax.optimization_barrier(lax.dot_general(g_RO, x_RI.astype(g_RO.dtype), _RI_RO)).T
    return dx_RI.astype(x_RI.dtype), dw_IO.astype(w_IO.dtype)


tokenwise_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dot_general(
    lhs: jax.Array,
    rhs: jax.Array,
    dimension_numbers: Any,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """``lax.dot_general`` for ``nn.Dense``: its (..., I) x (I, O) case goes through
    :func:`tokenwise_matmul` on flattened tokens; any other contraction is passed through."""
    standard = (((lhs.ndim - 1,), (0,)), ((), ()))
    if (
        rhs.ndim != 2
        or tuple(map(tuple, dimension_numbers[0])) != standard[0]
        or tuple(map(tuple, dimension_numbers[1])) != standard[1]
        or precision is not None
        or preferred_element_type is not None
    ):
        return lax.dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type)
    n_in, n_out = rhs.shape
    y = tokenwise_matmul(lhs.reshape(-1, n_in), rhs)
    return y.reshape(*lhs.shape[:-1], n_out)


Dense = functools.partial(nn.Dense, dot_general=dot_general)
"""``nn.Dense`` on :func:`dot_general` (same parameters: ``kernel`` (I, O) and ``bias``)."""


def tokens_2d(x: jnp.ndarray) -> jnp.ndarray:
    """(..., C) -> (tokens, C): token-wise layers work on one matrix of rows."""
    return x.reshape(-1, x.shape[-1])
