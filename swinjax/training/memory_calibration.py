"""What the memory arithmetic (:mod:`.memory`) is checked against, measured per image of a
batch as the difference between two batch sizes (so that parameter-sized buffers cancel):

- :func:`saved_bytes_per_image`: the residuals JAX keeps from the forward to the backward pass
  of the loss's gradient (``jax.vjp`` under ``jax.eval_shape``: traced, not compiled; the
  formulation's own count, whatever the backend), to compare with
  ``memory.activation_bytes(model).saved``;
- :func:`temp_bytes_per_image`: XLA's temporary bytes of the compiled gradient
  (``compiled.memory_analysis()``) on JAX's default backend, to compare with
  ``memory.activation_bytes(model).total``. It compiles: seconds for tiny models, a minute for
  ``swin_t`` at 224 on a 2-core CPU. XLA:CPU schedules rematerialised blocks as early as their
  inputs allow, so there ``remat`` saves nothing (docs/performance.md); accelerators differ.

The loss is the mean cross-entropy of ``model`` on uint8 images scaled to [0, 1], in training
mode (dropout and drop-path drawn), as ``steps.train_step`` computes it without augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from swinjax.errors import ConfigError
from swinjax.models.layers import windows
from swinjax.models.presets import param_shapes
from swinjax.models.swin import SwinTransformer
from swinjax.training.losses import cross_entropy


def _loss(model: SwinTransformer) -> Callable[..., jax.Array]:
    def loss(params: Any, key: jax.Array, images_BHWC: jax.Array, labels_B: jax.Array):
        x = images_BHWC.astype(jnp.float32) / 255.0
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
        return cross_entropy(logits, labels_B, 0.0).mean()

    return loss


def _arguments(model: SwinTransformer, batch: int) -> tuple[Any, ...]:
    """Shapes of (params, dropout key, images, labels) for a batch of ``batch`` images."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch={batch!r}: must be an integer >= 1")
    img = windows.to_pair(model.img_size)
    return (
        param_shapes(model),
        jax.eval_shape(lambda: jax.random.key(0)),
        jax.ShapeDtypeStruct((batch, *img, model.in_chans), jnp.uint8),
        jax.ShapeDtypeStruct((batch,), jnp.int32),
    )


def saved_bytes(model: SwinTransformer, batch: int) -> int:
    """Bytes of the residuals ``jax.vjp`` of the loss keeps for ``batch`` images (parameters
    used as residuals included)."""
    loss = _loss(model)

    def residuals(params: Any, key: jax.Array, images: jax.Array, labels: jax.Array) -> Any:
        return jax.vjp(lambda p: loss(p, key, images, labels), params)[1]

    leaves = jax.tree.leaves(jax.eval_shape(residuals, *_arguments(model, batch)))
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in leaves)


def temp_bytes(model: SwinTransformer, batch: int) -> int | None:
    """XLA's temporary bytes of the compiled loss's gradient for ``batch`` images (parameters
    are arguments, gradients outputs); None where the backend does not say."""
    grads = jax.jit(jax.value_and_grad(_loss(model)))
    compiled = grads.lower(*_arguments(model, batch)).compile()
    return getattr(compiled.memory_analysis(), "temp_size_in_bytes", None)


def saved_bytes_per_image(model: SwinTransformer, batch: int = 2) -> float:
    """(saved at ``batch``) - (saved at ``batch // 2``), per image of the difference."""
    small = max(1, batch // 2)
    return (saved_bytes(model, batch) - saved_bytes(model, small)) / (batch - small)


def temp_bytes_per_image(model: SwinTransformer, batch: int = 2) -> float | None:
    """(temp at ``batch``) - (temp at ``batch // 2``), per image of the difference."""
    small = max(1, batch // 2)
    big, little = temp_bytes(model, batch), temp_bytes(model, small)
    return None if big is None or little is None else (big - little) / (batch - small)
