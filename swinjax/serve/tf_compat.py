"""What the installed TensorFlow can read of JAX's StableHLO, for ``jax2tf`` SavedModels.

Two gaps, measured with jax 0.10.2 and TensorFlow 2.21 (its ``XlaCallModule`` reads StableHLO up
to 1.13.7):

- JAX serializes for a consumer at most 4 weeks older than itself (StableHLO 1.15 here): older
  readers fail with "failed to deserialize portable artifact". The target is capped at
  TensorFlow's own version.
- ``lax.erf`` (the exact GELU) lowers to ``chlo.erf``, serialized as a composite whose
  decomposition TensorFlow's shape refinement rejects under a symbolic batch ("op has dynamic
  shapes"). It is lowered instead as the rational approximation that XLA and Eigen use for
  float32 erf (inputs clamped to [-4, 4]; within 1e-6 of ``lax.erf``).

Both hold only inside :func:`stablehlo_for_tensorflow`, where the SavedModel is traced and saved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp

# float32 erf(x) = x P(x^2) / Q(x^2) on [-4, 4] (Eigen's generic_fast_erf_float, as XLA's).
_ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)


def erf_rational(x: jax.Array) -> jax.Array:
    """erf of float32 ``x`` from plain StableHLO ops (no CHLO): x P(x^2) / Q(x^2)."""
    x = jax.lax.clamp(jnp.asarray(-4.0, x.dtype), x, jnp.asarray(4.0, x.dtype))
    x2 = x * x
    p = jnp.asarray(_ERF_P[0], x.dtype)
    for c in _ERF_P[1:]:
        p = p * x2 + jnp.asarray(c, x.dtype)
    q = jnp.asarray(_ERF_Q[0], x.dtype)
    for c in _ERF_Q[1:]:
        q = q * x2 + jnp.asarray(c, x.dtype)
    return x * p / q


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


@contextlib.contextmanager
def stablehlo_for_tensorflow() -> Iterator[None]:
    """Inside: JAX serializes StableHLO that the installed TensorFlow reads (see the module)."""
    from jax._src.export import _export
    from jax._src.interpreters import mlir
    from jax._src.lax import special
    from tensorflow.compiler.mlir.stablehlo import stablehlo as tf_stablehlo

    hlo = _export.hlo
    original_version = hlo.get_version_from_compatibility_requirement
    original_erf = mlir._lowerings[special.erf_p]
    readable = tf_stablehlo.get_current_version()

    def capped(requirement):
        return min(original_version(requirement), readable, key=_version)

    hlo.get_version_from_compatibility_requirement = capped
    mlir.register_lowering(special.erf_p, mlir.lower_fun(erf_rational, multiple_results=False))
    try:
        yield
    finally:
        hlo.get_version_from_compatibility_requirement = original_version
        mlir._lowerings[special.erf_p] = original_erf
