"""placeholder"""

from __future__ import annotations

from swinjax.errors import MissingDependencyError


def check_onnx() -> None:
    """MissingDependencyError unless jax2onnx is installed."""
    raise MissingDependencyError("onnx: not yet")


def export_onnx(restored, out):
    raise MissingDependencyError("onnx: not yet")
