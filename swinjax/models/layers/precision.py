"""The mixed-precision policy, in one place.

``config.dtype`` is the *compute* dtype; everything else follows this table:

=============================  ==========================================================
what                           dtype
=============================  ==========================================================
parameters                     float32 (``param_dtype``); cast to ``dtype`` where used
optimizer state                float32; Adam's first moment bfloat16 with
                               ``adam_mu_dtype='bfloat16'`` (big_vision's ``mu_dtype``)
gradients                      float32 (the parameters' dtype)
dense / conv / attention       ``dtype`` operands (float32 or bfloat16)
matrix products
LayerNorm mean and variance    float32 (flax's ``force_float32_reductions``), output
                               ``dtype``
attention logits, softmax      float32 (``swinjax.models.layers.attention``), the
                               probabilities cast to ``dtype`` before the product with v
GELU                           float32 inside (``swinjax.models.layers.activations``)
Swin V2 attention              float32: the norms of queries and keys, the clamped and
                               exponentiated logit scale, the position-bias MLP and its
                               sigmoid (``swinjax.models.layers.blocks_v2``); the product
                               of q and k (raw, its logits then scaled by the inverse
                               norms, or normalised first: ``attention``) in ``dtype``,
                               logits and softmax float32 as above
pooling, head logits           float32 (``ClassifierHead``)
loss, metrics                  float32 (``swinjax.training.losses``)
=============================  ==========================================================

One exception, in flax: the backward pass of a ``dtype`` dense or conv layer sums its bias
gradient in ``dtype`` before the cast to float32. Dropout and drop-path scale in float32
(``swinjax.models.layers.dropout.drop``).

``float16`` is refused (:func:`check_compute_dtype`): its exponent range needs dynamic loss
scaling, which swinjax does not have, and without it small gradients underflow to zero silently.
"""

from __future__ import annotations

from swinjax.errors import ConfigError

COMPUTE_DTYPES = ("float32", "bfloat16")


def check_compute_dtype(dtype: str) -> None:
    """Raises ConfigError unless ``dtype`` is a compute dtype the policy supports."""
    if dtype == "float16":
        raise ConfigError(
            "config.dtype='float16' is refused: swinjax has no dynamic loss scaling, so float16 "
            "gradients underflow to zero silently; use --config.dtype=bfloat16 on hardware "
            "that has it (TPU, A100/H100, recent CPUs), else --config.dtype=float32"
        )
    if dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"config.dtype={dtype!r}: use one of {COMPUTE_DTYPES}")
