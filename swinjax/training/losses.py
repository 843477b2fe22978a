"""The loss and the metrics: label-smoothed cross-entropy and top-k correctness."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits_BK: jax.Array, labels_B: jax.Array, smoothing: Any) -> jax.Array:
    """Per-example softmax cross-entropy against ``one_hot * (1 - s) + s / K`` targets: Keras'
    ``CategoricalCrossentropy(label_smoothing=s)``; ``s`` may be an array (traced)."""
    K = logits_BK.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels_B, K), smoothing)
    return optax.softmax_cross_entropy(logits_BK.astype(jnp.float32), targets)


def topk_correct(logits_BK: jax.Array, labels_B: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the ``min(k, K)`` highest logits, else 0.0.

    Ties count in the label's favour (as ``tf.math.in_top_k``); a non-finite label logit is
    never correct.
    """
    k = min(k, logits_BK.shape[-1])
    label_logit = jnp.take_along_axis(logits_BK, labels_B[:, None], axis=-1)
    rank = jnp.sum(logits_BK > label_logit, axis=-1)
    return ((rank < k) & jnp.isfinite(label_logit[:, 0])).astype(jnp.float32)
