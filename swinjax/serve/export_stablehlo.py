"""A saved model as StableHLO (``jax.export``): ``model.stablehlo`` (the serialized
:class:`jax.export.Exported`, the parameters embedded as constants) and ``model.json`` (its input
spec, the class names), loadable without swinjax or the checkpoint:

    exported = jax.export.deserialize(open("OUT/model.stablehlo", "rb").read())
    out = exported.call(images_BHWC_uint8)        # {"logits": (B, K), "probabilities": (B, K)}

The batch dimension is symbolic (any batch size); height, width and channels are fixed (the
model's input size); images are uint8 and normalized inside (:mod:`swinjax.serve.serving`).
Inference only: the function has no training mode and no gradient of the parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp

from swinjax.serve.serving import input_shape, serving_function, spec_record
from swinjax.training.inference import Restored

MODULE_FILE = "model.stablehlo"
SPEC_FILE = "model.json"


def export_exported(restored: Restored, platforms: tuple[str, ...] | None = None):
    """The :class:`jax.export.Exported` of the serving function on uint8 images of a symbolic
    batch ``b``; ``platforms``: where it may run (None: JAX's default backend)."""
    serve = serving_function(restored)
    params = restored.params
    (batch,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, *input_shape(restored)), jnp.uint8)
    return jax.export.export(jax.jit(lambda x: serve(params, x)), platforms=platforms)(spec)


def export_stablehlo(
    restored: Restored, out: Path, platforms: tuple[str, ...] | None = None
) -> list[Path]:
    """Writes ``out/model.stablehlo`` and ``out/model.json``; returns their paths."""
    exported = export_exported(restored, platforms)
    spec = {**spec_record(restored), "platforms": list(exported.platforms)}
    out.mkdir(parents=True, exist_ok=True)
    (out / MODULE_FILE).write_bytes(exported.serialize())
    (out / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return [out / MODULE_FILE, out / SPEC_FILE]
