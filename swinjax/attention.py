"""Attention inside windows, as functions of per-window queries, keys and values.

Two formulations of the same math (``tests/test_kernels.py`` checks they agree, values and
gradients):

- :func:`matmul_attention`: two batched matrix products per window and head, the textbook form;
  right for windows of many tokens (Swin-T's 7 x 7 = 49).
- :func:`small_window_attention`: for windows of a few tokens (the Keras example's 2 x 2 = 4),
  where Bw * heads matrix products of 4 x 8 x 4 run as slow batched GEMMs and XLA transposes
  around them. Every query/key pair is an elementwise product summed over the head dimension,
  and the backward pass is written out by hand (``jax.custom_vjp``) so that XLA fuses each
  gradient into one loop over the (Bw, N, N, H) pairs, reading the saved q, k, v and
  probabilities, instead of materialising broadcast copies of q and k.

Shapes: ``q/k/v_BwNHD`` (batch * windows, tokens, heads, head dim), ``add_wNNH`` the additive
logit term (relative position bias plus shifted-window mask) for each of the nW windows of an
image, ``scale_BwNNH`` the dropout multiplier of the probabilities (0 or 1 / keep; None: no
dropout). Queries come pre-scaled. Logits and softmax are float32; outputs have v's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _add_per_window(logits_BwNNH: jax.Array, add_wNNH: jax.Array) -> jax.Array:
    Bw, N, M, H = logits_BwNNH.shape
    nW = add_wNNH.shape[0]
    return (logits_BwNNH.reshape(Bw // nW, nW, N, M, H) + add_wNNH).reshape(Bw, N, M, H)


def _probabilities(q_BwNHD: jax.Array, k_BwNHD: jax.Array, add_wNNH: jax.Array) -> jax.Array:
    logits = jnp.sum(q_BwNHD[:, :, None] * k_BwNHD[:, None], axis=-1, dtype=jnp.float32)
    return jax.nn.softmax(_add_per_window(logits, add_wNNH), axis=2)


@jax.custom_vjp
def _small(q_BwNHD, k_BwNHD, v_BwNHD, add_wNNH, scale_BwNNH):
    return _small_fwd(q_BwNHD, k_BwNHD, v_BwNHD, add_wNNH, scale_BwNNH)[0]


def _small_fwd(q_BwNHD, k_BwNHD, v_BwNHD, add_wNNH, scale_BwNNH):
    p_BwNNH = _probabilities(q_BwNHD, k_BwNHD, add_wNNH)
    a_BwNNH = (p_BwNNH * scale_BwNNH).astype(v_BwNHD.dtype)
    out = jnp.sum(a_BwNNH[..., None] * v_BwNHD[:, None], axis=2)
    return out, (q_BwNHD, k_BwNHD, v_BwNHD, p_BwNNH, scale_BwNNH, add_wNNH.shape[0])


def _small_bwd(residuals, g_BwNHD):
    q, k, v, p, scale, nW = residuals  # (Bw, N, H, D) x3, (Bw, N, M, H) x2
    g = g_BwNHD
    # out[b, n] = sum_m a[b, n, m] v[b, m]  (per head)
    da = jnp.sum(g[:, :, None] * v[:, None], axis=-1, dtype=jnp.float32)  # (Bw, N, M, H)
    a = (p * scale).astype(v.dtype)
    dv = jnp.sum(a[..., None] * g[:, :, None], axis=1, dtype=jnp.float32)  # over queries n
    dp = da * scale
    dlogits = p * (dp - jnp.sum(p * dp, axis=2, keepdims=True))
    dl = dlogits.astype(q.dtype)
    dq = jnp.sum(dl[..., None] * k[:, None], axis=2, dtype=jnp.float32)  # over keys m
    dk = jnp.sum(dl[..., None] * q[:, :, None], axis=1, dtype=jnp.float32)  # over queries n
    Bw, N, M, H = dlogits.shape
    dadd = jnp.sum(dlogits.reshape(Bw // nW, nW, N, M, H), axis=0)
    dscale = p * da
    return (
        dq.astype(q.dtype),
        dk.astype(k.dtype),
        dv.astype(v.dtype),
        dadd,
        dscale.astype(scale.dtype),
    )


_small.defvjp(_small_fwd, _small_bwd)


def small_window_attention(
    q_BwNHD: jax.Array,
    k_BwNHD: jax.Array,
    v_BwNHD: jax.Array,
    add_wNNH: jax.Array,
    scale_BwNNH: jax.Array | None = None,
) -> jax.Array:
    """softmax(q k^T + add) (times the dropout scale) v, per window and head: (Bw, N, H, D)."""
    if scale_BwNNH is None:
        scale_BwNNH = jnp.ones((), jnp.float32)
    Bw, N, H, _ = q_BwNHD.shape
    scale_BwNNH = jnp.broadcast_to(scale_BwNNH.astype(jnp.float32), (Bw, N, N, H))
    return _small(q_BwNHD, k_BwNHD, v_BwNHD, add_wNNH.astype(jnp.float32), scale_BwNNH)


def matmul_attention(
    q_BwNHD: jax.Array,
    k_BwNHD: jax.Array,
    v_BwNHD: jax.Array,
    add_wNNH: jax.Array,
    scale_BwNNH: jax.Array | None = None,
) -> jax.Array:
    """The same function as :func:`small_window_attention`, by batched matrix products."""
    logits = jnp.einsum("bnhd,bmhd->bhnm", q_BwNHD, k_BwNHD).astype(jnp.float32)
    Bw, H, N, M = logits.shape
    nW = add_wNNH.shape[0]
    add_wHNN = add_wNNH.astype(jnp.float32).transpose(0, 3, 1, 2)
    logits = (logits.reshape(Bw // nW, nW, H, N, M) + add_wHNN).reshape(Bw, H, N, M)
    attn = jax.nn.softmax(logits, axis=-1)
    if scale_BwNNH is not None:
        attn = attn * scale_BwNNH.astype(jnp.float32).transpose(0, 3, 1, 2)
    return jnp.einsum("bhnm,bmhd->bnhd", attn.astype(v_BwNHD.dtype), v_BwNHD)
