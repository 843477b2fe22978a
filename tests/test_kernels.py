"""The faster formulations behind the model agree with the textbook ones: the fused Threefry bits
and dropout, the small-window attention and its hand-written gradient, the token-wise matmul's
gradient, the exact GELU's gradient, and the package's XLA flags."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import runtime
from swinjax.models.layers import attention, dropout, linear
from swinjax.models.layers.activations import gelu


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5, 4), (64, 9, 33)])
def test_threefry_bits_equal_jax_random_bits(shape):
    for seed in (0, 1234):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(
            np.asarray(dropout.threefry_bits(key, shape)),
            np.asarray(jax.random.bits(key, shape, jnp.uint32)),
        )


def test_threefry_known_answer():
    # Salmon et al.'s Random123 known-answer test for Threefry-2x32-20, key 0, counter 0.
    zero = jnp.zeros((1,), jnp.uint32)
    x0, x1 = dropout.threefry2x32(jnp.uint32(0), jnp.uint32(0), zero, zero)
    assert (int(x0[0]), int(x1[0])) == (0x6B200159, 0x99BA4EFE)


def test_bernoulli_rate_and_independence():
    n = 1_000_001  # odd: the second word of the last counter is dropped
    mask = np.asarray(dropout.bernoulli(jax.random.key(0), 0.97, (n,)))
    assert mask.shape == (n,) and mask.dtype == bool
    # Binomial standard deviation: sqrt(0.97 * 0.03 / n) = 1.7e-4.
    assert abs(mask.mean() - 0.97) < 1e-3
    # The two halves (the two words of each Threefry block) are not copies of each other.
    half = n // 2
    assert abs(np.mean(mask[:half] == mask[half : 2 * half]) - (0.97**2 + 0.03**2)) < 2e-3
    other = np.asarray(dropout.bernoulli(jax.random.key(1), 0.97, (n,)))
    assert (mask != other).any()
    square = np.asarray(dropout.bernoulli(jax.random.key(2), 0.5, (200, 300)))
    assert abs(square.mean() - 0.5) < 0.01 and abs(square[:, 0].mean() - 0.5) < 0.15
    assert np.asarray(dropout.bernoulli(jax.random.key(0), 1.0, (5,))).all()


def test_bernoulli_other_prng_falls_back():
    key = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(
        np.asarray(dropout.bernoulli(key, 0.7, (50,))),
        np.asarray(jax.random.bernoulli(key, 0.7, (50,))),
    )


def test_dropout_module():
    x = jax.random.normal(jax.random.key(0), (64, 128)) + 3.0
    rngs = {"dropout": jax.random.key(1)}
    assert dropout.Dropout(rate=0.2).apply({}, x, deterministic=True, rngs=rngs) is x
    assert dropout.Dropout(rate=0.0).apply({}, x, deterministic=False, rngs=rngs) is x
    y = np.asarray(dropout.Dropout(rate=0.2).apply({}, x, deterministic=False, rngs=rngs))
    kept = y != 0
    assert abs(kept.mean() - 0.8) < 0.02
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.8, rtol=1e-6)
    y2 = dropout.Dropout(rate=0.2).apply(
        {}, x, deterministic=False, rngs={"dropout": jax.random.key(2)}
    )
    assert (np.asarray(y2) != y).any()


def _attention_inputs(seed: int, nW: int = 4, images: int = 2, N: int = 4, H: int = 3, D: int = 5):
    keys = jax.random.split(jax.random.key(seed), 5)
    Bw = nW * images
    q, k, v = (jax.random.normal(kk, (Bw, N, H, D)) for kk in keys[:3])
    add = jax.random.normal(keys[3], (nW, N, N, H))
    add = add + jnp.where(jax.random.bernoulli(keys[4], 0.3, (nW, N, N, 1)), -100.0, 0.0)
    scale = dropout.dropout_scale(jax.random.key(seed + 100), 0.25, (Bw, N, N, H))
    return q, k, v, add, scale


@pytest.mark.parametrize("with_dropout", [False, True])
def test_small_window_attention_matches_matmul_attention(with_dropout):
    q, k, v, add, scale = _attention_inputs(0)
    scale = scale if with_dropout else None
    small = attention.small_window_attention(q, k, v, add, scale)
    ref = attention.matmul_attention(q, k, v, add, scale)
    np.testing.assert_allclose(np.asarray(small), np.asarray(ref), rtol=1e-5, atol=1e-6)

    cotangent = jax.random.normal(jax.random.key(9), small.shape)

    def loss(fn):
        return lambda q, k, v, add: jnp.sum(fn(q, k, v, add, scale) * cotangent)

    g_small = jax.grad(loss(attention.small_window_attention), argnums=(0, 1, 2, 3))(q, k, v, add)
    g_ref = jax.grad(loss(attention.matmul_attention), argnums=(0, 1, 2, 3))(q, k, v, add)
    for a, b in zip(g_small, g_ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("nW", [1, 4])
@pytest.mark.parametrize("with_dropout", [False, True])
def test_dot_product_attention_matches_matmul_attention(nW, with_dropout):
    """jax.nn.dot_product_attention with the per-window term as its bias (the reference set)."""
    q, k, v, add, scale = _attention_inputs(2, nW=nW)
    scale = scale if with_dropout else None
    cotangent = jax.random.normal(jax.random.key(9), q.shape)

    def loss(fn):
        return lambda q, k, v, add: jnp.sum(fn(q, k, v, add, scale) * cotangent)

    for a, b in zip(
        jax.value_and_grad(loss(attention.dot_product_attention), (0, 1, 2, 3))(q, k, v, add),
        jax.value_and_grad(loss(attention.matmul_attention), (0, 1, 2, 3))(q, k, v, add),
        strict=True,
    ):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_dropout", [False, True])
@pytest.mark.parametrize("nW", [1, 4])
def test_cosine_attention_formulations_agree(nW, with_dropout):
    """Swin V2's scaled cosine logits: folded into the logits (matmul), and normalising q and k
    first (small windows, jax.nn.dot_product_attention, and the plain form of both): the same
    values and gradients, the per-head scale's included; a zero query stays finite."""
    q, k, v, add, scale = _attention_inputs(3, nW=nW)
    q = q.at[0, 1].set(0.0)  # one zero query in every head: F.normalize's eps case
    scale = scale if with_dropout else None
    logit_scale_h = jnp.array([10.0, 3.0, 42.0])
    cotangent = jax.random.normal(jax.random.key(9), q.shape)

    def plain(q, k, v, add, scale, logit_scale_h):
        qn, kn = attention.cosine_queries_keys(q, k, logit_scale_h)
        return attention.matmul_attention(qn, kn, v, add, scale)

    def loss(fn):
        return lambda q, k, v, add, s: jnp.sum(fn(q, k, v, add, scale, s) * cotangent)

    want = jax.value_and_grad(loss(plain), (0, 1, 2, 3, 4))(q, k, v, add, logit_scale_h)
    fns = [attention.matmul_attention, attention.small_window_attention]
    fns.append(attention.dot_product_attention)
    for fn in fns:
        got = jax.value_and_grad(loss(fn), (0, 1, 2, 3, 4))(q, k, v, add, logit_scale_h)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert np.all(np.isfinite(np.asarray(x)))
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-4)
    # the cosine is bounded: scaling q or k changes nothing
    ref = attention.matmul_attention(q, k, v, add, scale, logit_scale_h)
    scaled = attention.matmul_attention(3 * q, k / 7, v, add, scale, logit_scale_h)
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(ref), rtol=1e-5, atol=1e-6)


def test_small_window_attention_bfloat16_close():
    q, k, v, add, _ = _attention_inputs(1)
    ref = attention.matmul_attention(q, k, v, add)
    bf = attention.small_window_attention(
        q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16), add
    )
    assert bf.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(bf, np.float32), np.asarray(ref), atol=0.05)


@pytest.mark.parametrize("K,M", [(16, 48), (48, 16)])
def test_matmul_gradient_matches_autodiff(K, M):
    x = jax.random.normal(jax.random.key(0), (2, 5, 7, K))
    w = jax.random.normal(jax.random.key(1), (K, M))
    g = jax.random.normal(jax.random.key(2), (2, 5, 7, M))

    def ours(x, w):
        return jnp.sum(linear.dot_general(x, w, (((3,), (0,)), ((), ()))) * g)

    def plain(x, w):
        return jnp.sum(jnp.einsum("bhwk,km->bhwm", x, w) * g)

    np.testing.assert_allclose(ours(x, w), plain(x, w), rtol=1e-5)
    for a, b in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(plain, (0, 1))(x, w), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_dense_keeps_flax_parameters_and_values():
    x = jax.random.normal(jax.random.key(0), (3, 4, 8))
    params = nn.Dense(6).init(jax.random.key(1), x)
    ours = linear.Dense(6).init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ours)
    np.testing.assert_allclose(
        np.asarray(linear.Dense(6).apply(params, x)),
        np.asarray(nn.Dense(6).apply(params, x)),
        rtol=1e-6,
    )


def test_gelu_matches_exact_gelu_and_its_gradient():
    x = jnp.linspace(-8.0, 8.0, 1001)
    # PyTorch's and Keras' form 0.5 x (1 + erf(x / sqrt 2)) rounds the far negative tail
    # (below ~1e-7) to 0 where jax's erfc form keeps it.
    np.testing.assert_allclose(
        np.asarray(gelu(x)), np.asarray(jax.nn.gelu(x, approximate=False)), rtol=1e-6, atol=1e-6
    )
    ours = jax.grad(lambda x: jnp.sum(gelu(x) * jnp.cos(x)))(x)
    ref = jax.grad(lambda x: jnp.sum(jax.nn.gelu(x, approximate=False) * jnp.cos(x)))(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-6)


def test_xla_flags_respect_the_user(monkeypatch):
    monkeypatch.setattr(runtime, "_jaxlib_version", lambda: "0.10.2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    monkeypatch.delenv("SWINJAX_RUNTIME_TUNING", raising=False)
    assert runtime.apply_xla_flags() == ["--xla_cpu_experimental_ynn_fusion_type=-reduce"]
    assert runtime.apply_xla_flags() == []  # idempotent
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=individual_dot")
    assert runtime.apply_xla_flags() == []
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("SWINJAX_RUNTIME_TUNING", "0")
    assert runtime.apply_xla_flags() == []
    monkeypatch.delenv("SWINJAX_RUNTIME_TUNING")
    monkeypatch.setattr(runtime, "_jaxlib_version", lambda: "0.7.0")
    assert runtime.apply_xla_flags() == []


def test_hugepage_restart_only_where_it_applies():
    glibc = ("glibc", "2.36")
    assert runtime.hugepage_tunables({}, glibc, "madvise") == "glibc.malloc.hugetlb=1"
    assert runtime.hugepage_tunables({}, glibc, "always") == "glibc.malloc.hugetlb=1"
    assert runtime.hugepage_tunables({}, glibc, "never") is None
    assert runtime.hugepage_tunables({}, ("glibc", "2.31"), "madvise") is None
    assert runtime.hugepage_tunables({}, ("", ""), "madvise") is None  # musl, macOS
    # Set already (by the user or by the restart itself): never restart again.
    assert runtime.hugepage_tunables({"GLIBC_TUNABLES": ""}, glibc, "madvise") is None
    assert runtime.hugepage_tunables({"SWINJAX_RUNTIME_TUNING": "0"}, glibc, "madvise") is None
