"""A saved model as ONNX, converted by ``jax2onnx`` (``pip install 'swinjax[export]'``):
``model.onnx`` (large weights may spill into ``model.onnx.data`` beside it) and ``model.json``
(input spec, class names), for ONNX Runtime and the runtimes that read ONNX:

    session = onnxruntime.InferenceSession("OUT/model.onnx")
    logits, probabilities = session.run(None, {"images": uint8_BHWC})

The function is the serving function of :mod:`swinjax.serve.serving` (normalization inside),
the batch dimension symbolic, height, width and channels fixed. Inference only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax
import jax.numpy as jnp

from swinjax.errors import MissingDependencyError
from swinjax.serve.serving import input_shape, serving_function, spec_record
from swinjax.training.inference import Restored

MODEL_FILE = "model.onnx"
SPEC_FILE = "model.json"
INSTALL = "pip install 'swinjax[export]'"


def check_onnx() -> None:
    """MissingDependencyError, naming the install, unless jax2onnx is importable."""
    try:
        import jax2onnx  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"--format onnx needs jax2onnx ({type(e).__name__}: {e}); install it with "
            f"{INSTALL}, or export --format timm and convert with timm and torch.onnx"
        ) from e


def export_onnx(restored: Restored, out: Path) -> list[Path]:
    """Writes ``out/model.onnx`` (input ``images``: uint8, batch symbolic; outputs ``logits``,
    ``probabilities``) and ``out/model.json``; returns the paths written."""
    check_onnx()
    from jax2onnx import to_onnx

    serve, params = serving_function(restored), restored.params

    def logits_and_probabilities(images_BHWC: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = serve(params, images_BHWC)
        return out["logits"], out["probabilities"]

    (batch,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, *input_shape(restored)), jnp.uint8)
    out.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("jax2onnx"), logging.getLogger("onnx_ir")
    levels = [q.level for q in quiet]
    for q in quiet:  # its optional example plugins and shape notes are not the user's concern
        q.setLevel(logging.ERROR)
    try:
        to_onnx(
            logits_and_probabilities,
            inputs=[spec],
            model_name=f"swinjax_{restored.config.model}",
            return_mode="file",
            output_path=str(out / MODEL_FILE),
            input_names=["images"],
            output_names=["logits", "probabilities"],
        )
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    (out / SPEC_FILE).write_text(json.dumps(spec_record(restored), indent=2) + "\n")
    return sorted(p for p in out.iterdir() if p.is_file())
