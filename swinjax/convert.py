"""PyTorch Swin checkpoints (timm, or the official microsoft/Swin-Transformer) -> swinjax params.

    sd = {k: v.numpy() for k, v in timm_model.state_dict().items()}   # or a safetensors file
    params = params_from_timm(sd, model=create_model("swin_t"))
    logits = model.apply({"params": params}, x_BHWC)

The conversion is a rename table plus layout changes: ``a.b.3.c`` becomes ``a/b_3/c``; linear
weights (out, in) become kernels (in, out); the patch-embedding conv (O, I, kh, kw) becomes
(kh, kw, I, O); LayerNorm ``weight`` becomes ``scale``. The official layout (weights under
``"model"``, a stage's patch merging at its end, ``head.weight``, buffers saved) is recognised
and mapped onto timm's (merging at the start of the next stage, ``head.fc``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

# Buffers that the official checkpoints save and that swinjax derives from shapes.
_BUFFER_SUFFIXES = ("relative_position_index", "attn_mask")
_NORM_MODULE = re.compile(r"(^|\.)norm\d?$")


class CheckpointMismatchError(ValueError):
    """A state dict that does not fit the model: names the offending keys."""


def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    for wrapper in ("model", "state_dict"):
        if wrapper in state_dict and isinstance(state_dict[wrapper], Mapping):
            state_dict = state_dict[wrapper]
    out = {}
    for k, v in state_dict.items():
        arr = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        out[k.removeprefix("module.")] = arr
    return out


def to_timm_layout(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Unwraps, drops derived buffers, and moves an official checkpoint onto timm's names."""
    sd = _unwrap(state_dict)
    official = "layers.0.downsample.reduction.weight" in sd
    out = {}
    for k, v in sd.items():
        if k.endswith(_BUFFER_SUFFIXES):
            continue
        if official:
            k = re.sub(
                r"layers\.(\d+)\.downsample",
                lambda m: f"layers.{int(m.group(1)) + 1}.downsample",
                k,
            )
            k = re.sub(r"^head\.(weight|bias)$", r"head.fc.\1", k)
        out[k] = v
    return out


def _flax_leaf(torch_key: str, value: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """One timm tensor -> (flax path, array in flax layout)."""
    *modules, leaf = torch_key.split(".")
    path: list[str] = []
    for part in modules:
        if part.isdigit():
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    module = ".".join(modules)
    if leaf in ("relative_position_bias_table", "absolute_pos_embed"):
        return (*path, leaf), value
    if leaf == "bias":
        return (*path, "bias"), value
    if leaf != "weight":
        raise CheckpointMismatchError(f"unexpected key {torch_key!r}: unknown tensor kind {leaf!r}")
    if _NORM_MODULE.search(module):
        return (*path, "scale"), value
    if value.ndim == 4:  # conv (O, I, kh, kw) -> (kh, kw, I, O)
        return (*path, "kernel"), value.transpose(2, 3, 1, 0)
    if value.ndim == 2:  # linear (out, in) -> (in, out)
        return (*path, "kernel"), value.T
    raise CheckpointMismatchError(
        f"key {torch_key!r}: cannot convert a weight of shape {value.shape}"
    )


def params_from_timm(state_dict: Mapping[str, Any], model: Any | None = None) -> dict:
    """A timm or official Swin state dict (name -> array) as a swinjax params pytree.

    With ``model`` (a :class:`swinjax.model.SwinTransformer`), the result is checked against the
    model's parameter tree: a missing key, an unexpected key or a shape mismatch raises
    :class:`CheckpointMismatchError` naming the key, and dtypes follow the model's param_dtype.
    """
    sd = to_timm_layout(state_dict)
    flat: dict[tuple[str, ...], np.ndarray] = {}
    source: dict[tuple[str, ...], str] = {}
    for k, v in sd.items():
        path, arr = _flax_leaf(k, v)
        flat[path], source[path] = arr, k
    if model is None:
        return traverse_util.unflatten_dict(flat)

    from swinjax.model import param_shapes  # local import: the model imports nothing from here

    expected = traverse_util.flatten_dict(param_shapes(model))
    missing = sorted(expected.keys() - flat.keys())
    unexpected = sorted(flat.keys() - expected.keys())
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(_torch_name(p) for p in missing))
    if unexpected:
        problems.append("unexpected: " + ", ".join(repr(source[p]) for p in unexpected))
    for path in sorted(expected.keys() & flat.keys()):
        want, got = tuple(expected[path].shape), flat[path].shape
        if want != got:
            problems.append(
                f"shape mismatch for {source[path]!r}: checkpoint {got} (converted) "
                f"but the model expects {want} at {'/'.join(path)}"
            )
    if problems:
        raise CheckpointMismatchError("state dict does not match the model; " + "; ".join(problems))
    return traverse_util.unflatten_dict(
        {p: np.asarray(v, dtype=expected[p].dtype) for p, v in flat.items()}
    )


def _torch_name(path: tuple[str, ...]) -> str:
    """The timm key that would have produced a flax path (for error messages)."""
    *modules, leaf = path
    parts = [re.sub(r"_(\d+)$", r".\1", m) for m in modules]
    leaf = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    return repr(".".join([*parts, leaf]))
