"""Dropout whose random numbers fuse into the surrounding computation.

``jax.random.bits`` lowers Threefry-2x32 as a rolled loop over its rounds, materialising every
intermediate array: on a CPU, drawing the keras_example's dropout decisions that way cost more
than the matrix multiplies. :func:`threefry_bits` computes the *same* function (Threefry-2x32
with 20 rounds on the counters ``jax.random`` uses with ``jax_threefry_partitionable``, the
default) written out round by round as elementwise integer ops, which XLA fuses into the
consumer (the timings: docs/performance.md, "Measurements behind the cpu kernel set"). The bits
are bit for bit those of ``jax.random.bits`` for the same key (``tests/test_kernels.py`` checks
it); :func:`bernoulli` draws its masks from the same Threefry blocks.

``fused=False`` (the ``reference`` kernel set, :mod:`swinjax.models.layers.kernel_sets`) draws the
same masks through JAX's own Threefry primitive (``jax.extend.random.threefry_2x32``, one
``threefry2x32`` op that XLA does not fuse): the same function of the key, so a run gives the same
dropout masks under either kernel set.

Keys of another PRNG implementation, a disabled ``jax_threefry_partitionable``, or arrays of 2**32
elements or more fall back to ``jax.random``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.random import threefry_2x32

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KS_PARITY = np.uint32(0x1BD11BDA)


def _rotl(v: jax.Array, d: int) -> jax.Array:
    return lax.shift_left(v, np.uint32(d)) | lax.shift_right_logical(v, np.uint32(32 - d))


def threefry2x32(
    k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32-20 (Salmon et al. 2011) of the counter pair (x0, x1) under key (k0, k1),
    all uint32, unrolled so that XLA fuses it."""
    ks = (k0, k1, k0 ^ k1 ^ _KS_PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for r in range(5):
        for d in _ROTATIONS[r % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, d) ^ x0
        x0 = x0 + ks[(r + 1) % 3]
        x1 = x1 + ks[(r + 2) % 3] + np.uint32(r + 1)
    return x0, x1


def _unrolled_threefry_applies(key: jax.Array, size: int) -> bool:
    impl = jax.random.key_impl(key) if _is_typed(key) else None
    return (
        (impl is None or str(impl) == "threefry2x32")
        and size < 2**32
        and bool(jax.config.jax_threefry_partitionable)
    )


def _is_typed(key: jax.Array) -> bool:
    return jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def threefry_bits(key: jax.Array, shape: Sequence[int]) -> jax.Array:
    """uint32 random bits of ``shape``: equal to ``jax.random.bits(key, shape)``."""
    shape = tuple(int(s) for s in shape)
    if not _unrolled_threefry_applies(key, math.prod(shape)):
        return jax.random.bits(key, shape, jnp.uint32)
    data = jax.random.key_data(key) if _is_typed(key) else key
    # The row-major flat index of every element: the low word of jax's 64-bit counter (the
    # high word is 0 below 2**32 elements).
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
        stride *= shape[axis]
    b0, b1 = threefry2x32(data[0], data[1], jnp.zeros(shape, jnp.uint32), index)
    return b0 ^ b1


def bernoulli(key: jax.Array, p: float, shape: Sequence[int], fused: bool = True) -> jax.Array:
    """Boolean mask of ``shape``, True with probability ``p`` (to 2**-32), independently.

    Both 32-bit words of each Threefry block are used (two elements per counter, where
    ``jax.random.bernoulli`` folds them into one), the mask being the two halves concatenated.
    XLA computes that concatenation once, into a boolean array the forward and backward passes
    both read; the per-element form, equal to ``jax.random.bernoulli``, was recomputed inside
    each consumer, a slower step (docs/performance.md). Keys of another PRNG implementation fall
    back to ``jax.random.bernoulli``.

    ``fused=False``: the same mask from ``jax.extend.random.threefry_2x32`` on the counters
    (0, ..., 0, 0, 1, ..., half - 1), whose output is exactly the two words concatenated.
    """
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    if p >= 1.0:
        return jnp.ones(shape, bool)
    if not _unrolled_threefry_applies(key, n):
        return jax.random.bernoulli(key, p, shape)
    data = jax.random.key_data(key) if _is_typed(key) else key
    half = (n + 1) // 2
    counters = lax.iota(jnp.uint32, half)
    threshold = np.uint32(min(max(round(p * 2.0**32), 0), 2**32 - 1))
    if not fused:
        words = threefry_2x32(
            (data[0], data[1]), jnp.concatenate([jnp.zeros_like(counters), counters])
        )
        return (words < threshold)[:n].reshape(shape)
    w0, w1 = threefry2x32(data[0], data[1], jnp.zeros_like(counters), counters)
    return jnp.concatenate([w0 < threshold, w1 < threshold])[:n].reshape(shape)


def dropout_scale(
    key: jax.Array,
    rate: float,
    shape: Sequence[int],
    dtype: jnp.dtype = jnp.float32,
    fused: bool = True,
) -> jax.Array:
    """The multiplier of inverted dropout: 1 / (1 - rate) where kept, 0 where dropped."""
    keep = 1.0 - rate
    return jnp.where(
        bernoulli(key, keep, shape, fused), jnp.asarray(1.0 / keep, dtype), jnp.zeros((), dtype)
    )


def drop(
    x: jax.Array,
    key: jax.Array,
    rate: float,
    mask_shape: Sequence[int] | None = None,
    fused: bool = True,
) -> jax.Array:
    """Inverted dropout of ``x``: zeroed with probability ``rate``, survivors scaled by
    1 / (1 - rate); one decision per element, or per slice with a broadcastable ``mask_shape``
    (drop-path's (B, 1, ..., 1)). The scaling is float32 (the precision policy): 1 - rate
    rounded to bfloat16 would bias the expected value by up to 0.4%."""
    keep = 1.0 - rate
    kept = bernoulli(key, keep, x.shape if mask_shape is None else mask_shape, fused)
    scaled = (x.astype(jnp.float32) / jnp.float32(keep)).astype(x.dtype)
    return jnp.where(kept, scaled, jnp.zeros((), x.dtype))


class Dropout(nn.Module, kw_only=True):
    """``flax.linen.Dropout`` (the same fields, given by keyword; the same module names) on the
    fused generator.

    ``rate`` is a Python float; ``deterministic=True`` or ``rate == 0`` is the identity.
    ``fused=False``: the same masks through JAX's Threefry primitive (see :func:`bernoulli`).
    """

    rate: float
    rng_collection: str = "dropout"
    fused: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        if self.rate == 1.0:
            return jnp.zeros_like(x)
        return drop(x, self.make_rng(self.rng_collection), self.rate, fused=self.fused)
