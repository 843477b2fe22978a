"""Attention inside windows, as functions of per-window queries, keys and values.

Three formulations of the same math (``tests/test_kernels.py`` checks they agree, values and
gradients):

- :func:`matmul_attention`: two batched matrix products per window and head, the textbook form;
  right for windows of many tokens (Swin-T's 7 x 7 = 49).
- :func:`small_window_attention`: for windows of a few tokens (the Keras example's 2 x 2 = 4),
  where Bw * heads matrix products of 4 x 8 x 4 run as slow batched GEMMs and XLA transposes
  around them. Every query/key pair is an elementwise product summed over the head dimension,
  and the backward pass is written out by hand (``jax.custom_vjp``) so that XLA fuses each
  gradient into one loop over the (Bw, N, N, h) pairs, reading the saved q, k, v and
  probabilities, instead of materialising broadcast copies of q and k.
- :func:`dot_product_attention`: ``jax.nn.dot_product_attention`` (the ``reference`` kernel set,
  :mod:`swinjax.models.layers.kernel_sets`), the per-window term passed as its additive ``bias``; it
  has no dropout of the probabilities, so with attention dropout it is :func:`matmul_attention`.

Shapes: ``q/k/v_BwNhd`` (batch * windows, tokens, heads, head dim), ``add_wNNh`` the additive
logit term (relative position bias plus shifted-window mask) for each of the w windows of an
image, ``scale_BwNNh`` the dropout multiplier of the probabilities (0 or 1 / keep; None: no
dropout). Logits and softmax are float32; outputs have v's dtype.

Two kinds of logits, by ``logit_scale_h``:

- None (Swin V1): ``q . k``, the queries pre-scaled by the caller;
- an array of one scale per head (Swin V2's scaled cosine attention): ``cos(q, k) * scale``.
  :func:`matmul_attention` folds the normalisation into the logits (``q . k`` times the inverse
  norms of the query and the key, and the scale: float32 factors of each (query, key) pair,
  fused with the softmax): on the CPU its forward and backward at ``swinv2_cifar_t``'s stage-0
  shapes took 14.2 ms where normalising q and k first took 19.6 (V1's core: 14.4;
  docs/performance.md, "Swin V2 against timm ... idle"); the others normalise q and k first
  (:func:`cosine_queries_keys`, the plain form, tested equal).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize's: x / max(|x|, eps)


def inverse_norms(x_BwNhd: jax.Array) -> jax.Array:
    """1 / max(|x|, eps) over the last axis, float32: (Bw, N, h)."""
    x = x_BwNhd.astype(jnp.float32)
    return jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1), NORMALIZE_EPS**2))


def unit_vectors(x_BwNhd: jax.Array) -> jax.Array:
    """x / max(|x|, eps) over the last axis, in float32 (``F.normalize``); a zero vector stays
    zero with a finite gradient."""
    return x_BwNhd.astype(jnp.float32) * inverse_norms(x_BwNhd)[..., None]


def cosine_queries_keys(
    q_BwNhd: jax.Array, k_BwNhd: jax.Array, logit_scale_h: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Unit queries times the per-head scale and unit keys, in q's dtype: their products are
    the scaled cosine logits. Normalised in float32."""
    q = unit_vectors(q_BwNhd) * logit_scale_h.astype(jnp.float32)[:, None]
    return q.astype(q_BwNhd.dtype), unit_vectors(k_BwNhd).astype(k_BwNhd.dtype)


def _add_per_window(logits_BwNNh: jax.Array, add_wNNh: jax.Array) -> jax.Array:
    Bw, N, _, h = logits_BwNNh.shape
    num_windows = add_wNNh.shape[0]
    per_image = logits_BwNNh.reshape(Bw // num_windows, num_windows, N, N, h)
    return (per_image + add_wNNh).reshape(Bw, N, N, h)


def _probabilities(q_BwNhd: jax.Array, k_BwNhd: jax.Array, add_wNNh: jax.Array) -> jax.Array:
    logits = jnp.sum(q_BwNhd[:, :, None] * k_BwNhd[:, None], axis=-1, dtype=jnp.float32)
    return jax.nn.softmax(_add_per_window(logits, add_wNNh), axis=2)


@jax.custom_vjp
def _small_window_core(q_BwNhd, k_BwNhd, v_BwNhd, add_wNNh, scale_BwNNh):
    return _small_fwd(q_BwNhd, k_BwNhd, v_BwNhd, add_wNNh, scale_BwNNh)[0]


def _small_fwd(q_BwNhd, k_BwNhd, v_BwNhd, add_wNNh, scale_BwNNh):
    p_BwNNh = _probabilities(q_BwNhd, k_BwNhd, add_wNNh)
    a_BwNNh = (p_BwNNh * scale_BwNNh).astype(v_BwNhd.dtype)
    out = jnp.sum(a_BwNNh[..., None] * v_BwNhd[:, None], axis=2)
    return out, (q_BwNhd, k_BwNhd, v_BwNhd, p_BwNNh, scale_BwNNh, add_wNNh.shape[0])


def _small_bwd(residuals, g_BwNhd):
    q, k, v, p, scale, num_windows = residuals  # (Bw, N, h, d) x3, (Bw, N, N, h) x2
    g = g_BwNhd
    # out[b, n] = sum_m a[b, n, m] v[b, m]  (per head)
    da = jnp.sum(g[:, :, None] * v[:, None], axis=-1, dtype=jnp.float32)  # (Bw, N, N, h)
    a = (p * scale).astype(v.dtype)
    dv = jnp.sum(a[..., None] * g[:, :, None], axis=1, dtype=jnp.float32)  # over queries n
    dp = da * scale
    dlogits = p * (dp - jnp.sum(p * dp, axis=2, keepdims=True))
    dl = dlogits.astype(q.dtype)
    dq = jnp.sum(dl[..., None] * k[:, None], axis=2, dtype=jnp.float32)  # over keys m
    dk = jnp.sum(dl[..., None] * q[:, :, None], axis=1, dtype=jnp.float32)  # over queries n
    Bw, N, _, h = dlogits.shape
    dadd = jnp.sum(dlogits.reshape(Bw // num_windows, num_windows, N, N, h), axis=0)
    dscale = p * da
    return (
        dq.astype(q.dtype),
        dk.astype(k.dtype),
        dv.astype(v.dtype),
        dadd,
        dscale.astype(scale.dtype),
    )


_small_window_core.defvjp(_small_fwd, _small_bwd)


def small_window_attention(
    q_BwNhd: jax.Array,
    k_BwNhd: jax.Array,
    v_BwNhd: jax.Array,
    add_wNNh: jax.Array,
    scale_BwNNh: jax.Array | None = None,
    logit_scale_h: jax.Array | None = None,
) -> jax.Array:
    """softmax(q k^T + add) (times the dropout scale) v, per window and head: (Bw, N, h, d)."""
    if logit_scale_h is not None:
        q_BwNhd, k_BwNhd = cosine_queries_keys(q_BwNhd, k_BwNhd, logit_scale_h)
    if scale_BwNNh is None:
        scale_BwNNh = jnp.ones((), jnp.float32)
    Bw, N, h, _ = q_BwNhd.shape
    scale_BwNNh = jnp.broadcast_to(scale_BwNNh.astype(jnp.float32), (Bw, N, N, h))
    return _small_window_core(q_BwNhd, k_BwNhd, v_BwNhd, add_wNNh.astype(jnp.float32), scale_BwNNh)


def matmul_attention(
    q_BwNhd: jax.Array,
    k_BwNhd: jax.Array,
    v_BwNhd: jax.Array,
    add_wNNh: jax.Array,
    scale_BwNNh: jax.Array | None = None,
    logit_scale_h: jax.Array | None = None,
) -> jax.Array:
    """The same function as :func:`small_window_attention`, by batched matrix products; cosine
    logits folded (the module's docstring)."""
    logits = jnp.einsum("bnhd,bmhd->bhnm", q_BwNhd, k_BwNhd).astype(jnp.float32)
    if logit_scale_h is not None:
        q_BwhN = (inverse_norms(q_BwNhd) * logit_scale_h.astype(jnp.float32)).transpose(0, 2, 1)
        k_BwhN = inverse_norms(k_BwNhd).transpose(0, 2, 1)
        logits = logits * q_BwhN[..., None] * k_BwhN[:, :, None]
    Bw, h, N, _ = logits.shape
    num_windows = add_wNNh.shape[0]
    add_whNN = add_wNNh.astype(jnp.float32).transpose(0, 3, 1, 2)
    per_image = logits.reshape(Bw // num_windows, num_windows, h, N, N)
    logits = (per_image + add_whNN).reshape(Bw, h, N, N)
    attn = jax.nn.softmax(logits, axis=-1)
    if scale_BwNNh is not None:
        attn = attn * scale_BwNNh.astype(jnp.float32).transpose(0, 3, 1, 2)
    return jnp.einsum("bhnm,bmhd->bnhd", attn.astype(v_BwNhd.dtype), v_BwNhd)


def dot_product_attention(
    q_BwNhd: jax.Array,
    k_BwNhd: jax.Array,
    v_BwNhd: jax.Array,
    add_wNNh: jax.Array,
    scale_BwNNh: jax.Array | None = None,
    logit_scale_h: jax.Array | None = None,
) -> jax.Array:
    """The same function through ``jax.nn.dot_product_attention`` (JAX's default implementation:
    XLA's, in jax 0.10).

    Its layout (batch, sequence, heads, head dim) is ours (Bw, N, h, d); its ``bias`` must
    broadcast to (Bw, h, N, N), so a term that differs between the w windows of an image (the
    shifted-window mask) is broadcast over the images first. Queries come pre-scaled
    (``scale=1``). Attention dropout (``scale_BwNNh``) is not one of its arguments: then
    :func:`matmul_attention` computes it.
    """
    if scale_BwNNh is not None:
        return matmul_attention(q_BwNhd, k_BwNhd, v_BwNhd, add_wNNh, scale_BwNNh, logit_scale_h)
    if logit_scale_h is not None:
        q_BwNhd, k_BwNhd = cosine_queries_keys(q_BwNhd, k_BwNhd, logit_scale_h)
    Bw, N, h, _ = q_BwNhd.shape
    num_windows = add_wNNh.shape[0]
    bias_whNN = add_wNNh.astype(jnp.float32).transpose(0, 3, 1, 2)
    if num_windows == 1:  # (1, h, N, N) broadcasts over the windows
        return jax.nn.dot_product_attention(q_BwNhd, k_BwNhd, v_BwNhd, bias=bias_whNN, scale=1.0)
    bias_BwhNN = jnp.broadcast_to(bias_whNN, (Bw // num_windows, num_windows, h, N, N)).reshape(
        Bw, h, N, N
    )
    return jax.nn.dot_product_attention(q_BwNhd, k_BwNhd, v_BwNhd, bias=bias_BwhNN, scale=1.0)
