"""Kernel sets: the formulations of linear layers, dropout, GELU and window attention the model
traces (``SwinTransformer.kernels``, ``--config.kernels``).

- ``"reference"``: plain flax / JAX, differentiated by JAX: ``nn.Dense``, the exact GELU,
  dropout masks from JAX's Threefry primitive (``jax.extend.random.threefry_2x32``), and
  ``jax.nn.dot_product_attention`` with the relative position bias and the shifted-window mask
  as its additive ``bias`` (with attention dropout, which it lacks: the einsum formulation,
  :func:`swinjax.models.layers.attention.matmul_attention`).
- ``"cpu"``: the set tuned on XLA's CPU backend (``docs/performance.md``): ``linear.Dense`` (a
  GEMM-friendly VJP), the GELU with its own VJP, Threefry written out so that XLA fuses the masks
  into their consumers (:mod:`swinjax.models.layers.dropout`), and per window and head size the
  faster attention: elementwise products with a hand-written VJP for small windows and heads
  (:func:`elementwise_attention_wins`), batched matrix products above.
- ``"auto"``: resolved when the model is traced, by JAX's default backend: ``"cpu"`` on the CPU,
  ``"reference"`` on GPUs and TPUs. The CPU set was tuned, and measured faster, on the CPU only;
  nothing has been measured on a GPU or TPU yet, so there the plain formulations, which XLA's
  accelerator backends are built for, are the default until a measurement says otherwise.

Both sets have the same parameters (names, shapes, initialisers: a checkpoint of one loads into
the other) and draw the same dropout masks from the same key, so a run is reproducible across
them up to float rounding (``tests/test_kernels.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax

from swinjax.errors import ConfigError
from swinjax.models.layers import activations, attention, linear

KERNELS = ("auto", "reference", "cpu")

# The cpu set's attention: elementwise products (attention.small_window_attention) for windows of
# N <= ELEMENTWISE_MAX_TOKENS tokens whose heads of d channels have N * d <= ELEMENTWISE_MAX_ND,
# batched matrix products (attention.matmul_attention) otherwise: the products q k^T and p v of
# one small window and head (N x d x N) are too small for a GEMM to pay off. The thresholds sit
# where tools/measure_attention.py's timings of the two cross on the CPU (docs/performance.md,
# "Attention per window size").
ELEMENTWISE_MAX_TOKENS = 16
ELEMENTWISE_MAX_ND = 288

Attention = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class KernelSet:
    """One resolved kernel set: ``name`` is ``"reference"`` or ``"cpu"``."""

    name: str
    dense: Callable[..., nn.Module]  # nn.Dense's constructor and parameters
    gelu: Callable[[jax.Array], jax.Array]
    fused_dropout: bool  # dropout.Dropout(fused=...): same masks either way

    def attention(self, tokens: int, head_dim: int) -> Attention:
        """Attention for windows of ``tokens`` tokens and heads of ``head_dim`` channels (the
        signature of the functions of :mod:`swinjax.models.layers.attention`)."""
        if self.name == "reference":
            return attention.dot_product_attention
        if elementwise_attention_wins(tokens, head_dim):
            return attention.small_window_attention
        return attention.matmul_attention


REFERENCE = KernelSet(
    name="reference", dense=nn.Dense, gelu=activations.gelu_reference, fused_dropout=False
)
CPU = KernelSet(name="cpu", dense=linear.Dense, gelu=activations.gelu, fused_dropout=True)


def elementwise_attention_wins(tokens: int, head_dim: int) -> bool:
    """Whether the cpu set computes attention by elementwise products (thresholds above)."""
    return tokens <= ELEMENTWISE_MAX_TOKENS and tokens * head_dim <= ELEMENTWISE_MAX_ND


def validate_kernels(kernels: str) -> None:
    """Raises ValueError unless ``kernels`` is one of :data:`KERNELS`."""
    if kernels not in KERNELS:
        raise ConfigError(f"kernels {kernels!r} is not one of {KERNELS}")


def resolve(kernels: str, backend: str | None = None) -> str:
    """``"reference"`` or ``"cpu"``: ``"auto"`` by ``backend`` (None: JAX's default backend)."""
    validate_kernels(kernels)
    if kernels != "auto":
        return kernels
    return "cpu" if (backend or jax.default_backend()) == "cpu" else "reference"


def get(kernels: str) -> KernelSet:
    """The kernel set ``kernels`` resolves to (see :func:`resolve`)."""
    return CPU if resolve(kernels) == "cpu" else REFERENCE
