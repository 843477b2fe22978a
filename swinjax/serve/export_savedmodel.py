"""A saved model as a TensorFlow SavedModel (``jax2tf``, native serialization): the serving
function (:mod:`swinjax.serve.serving`) with the parameters as TensorFlow variables, for TF
Serving, TFLite converters and ``tf.saved_model.load``:

    loaded = tf.saved_model.load("OUT")
    out = loaded.signatures["serving_default"](images=uint8_BHWC)       # logits, probabilities
    out = loaded.signatures["serving_float"](images=float32_BHWC_in_0_1)

Any batch size; height, width and channels fixed (the model's input size); normalization
inside. Inference only (converted without gradients). The class names are in
``OUT/assets.extra/classes.json``. The StableHLO inside is written for the installed
TensorFlow to read (:mod:`swinjax.serve.tf_compat`: the exact GELU's erf as XLA's float32
rational approximation, within 1e-6).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from swinjax.serve.serving import input_shape, serving_function
from swinjax.serve.tf_compat import stablehlo_for_tensorflow
from swinjax.training.inference import Restored

SIGNATURES = {"serving_default": "uint8", "serving_float": "float32"}
CLASSES_FILE = Path("assets.extra") / "classes.json"


def export_savedmodel(restored: Restored, out: Path) -> list[Path]:
    """Writes a SavedModel into ``out`` (signatures ``serving_default``: uint8 images,
    ``serving_float``: float32 in [0, 1]); returns the paths written."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    serve = serving_function(restored)
    module = tf.Module()
    module.params = tf.nest.map_structure(
        lambda v: tf.Variable(np.asarray(v), trainable=False), jax.device_get(restored.params)
    )
    converted = jax2tf.convert(serve, polymorphic_shapes=[None, "(b, ...)"], with_gradient=False)
    signatures = {}
    for name, dtype in SIGNATURES.items():
        spec = tf.TensorSpec((None, *input_shape(restored)), getattr(tf, dtype), name="images")

        @tf.function(autograph=False, input_signature=[spec])
        def signature(images, converted=converted):
            return converted(module.params, images)

        signatures[name] = signature
    with stablehlo_for_tensorflow():  # the functions are traced and serialized while saving
        tf.saved_model.save(module, str(out), signatures=signatures)
    (out / CLASSES_FILE).parent.mkdir(exist_ok=True)
    (out / CLASSES_FILE).write_text(json.dumps(list(restored.class_names)) + "\n")
    return sorted(p for p in out.rglob("*") if p.is_file())
