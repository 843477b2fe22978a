"""The function every export format serializes: raw images in, logits and probabilities out.

    fn = serving_function(restored)           # restored: training.inference.restore_params
    out = fn(restored.params, images_BHWC)    # {"logits": (B, K), "probabilities": (B, K)}

The images are the model's input size (``restored.image_size``), uint8 (0..255) or float in
[0, 1]; the run's normalization (mean/std) is applied inside, as evaluation does on the device.
Resizing and center-cropping images of other sizes stays with the caller (the run's evaluation
preprocessing: shorter side to ``size / eval_crop_fraction``, then the central crop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from swinjax.augment import transforms
from swinjax.training.inference import Restored

Serving = Callable[[Any, jax.Array], dict[str, jax.Array]]


def serving_function(restored: Restored) -> Serving:
    """``fn(params, images_BHWC) -> {"logits", "probabilities"}`` (float32) for ``restored``'s
    model, normalization included; pure, so it can be jitted, exported or converted."""
    model = restored.model
    mean, std = restored.mean or None, restored.std or None

    def serve(params: Any, images_BHWC: jax.Array) -> dict[str, jax.Array]:
        x_BHWC = transforms.normalize(images_BHWC, mean, std)
        logits_BK = model.apply({"params": params}, x_BHWC).astype(jnp.float32)
        return {"logits": logits_BK, "probabilities": jax.nn.softmax(logits_BK, axis=-1)}

    return serve


def input_shape(restored: Restored) -> tuple[int, int, int]:
    """(H, W, C) of one image the exported function takes."""
    h, w = restored.image_size
    return (h, w, int(restored.model.in_chans))


def spec_record(restored: Restored, dtype: str = "uint8") -> dict[str, Any]:
    """The JSON sidecar of an exported function: its input, normalization, outputs, classes."""
    h, w, c = input_shape(restored)
    return {
        "input": {"shape": ["b", h, w, c], "dtype": dtype, "layout": "NHWC"},
        "normalization": {"mean": list(restored.mean), "std": list(restored.std)},
        "normalized_inside": True,
        "outputs": ["logits", "probabilities"],
        "class_names": list(restored.class_names),
        "swinjax": {"model": restored.config.model, "step": restored.step, "ema": restored.ema},
    }
