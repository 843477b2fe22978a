"""PyTorch Swin checkpoints (timm, the official microsoft/Swin-Transformer, or Hugging Face
transformers') -> swinjax params, Swin V1 and V2.

    sd = {k: v.numpy() for k, v in timm_model.state_dict().items()}   # or a safetensors file
    params = params_from_timm(sd, model=create_model("swin_t"))
    model = create_model("swin_t", img_size=256, window_size=8, num_classes=100)
    params, report = convert_checkpoint(sd, model, head="auto")   # head: left to initialise

The conversion is a rename table plus layout changes: ``a.b.3.c`` becomes ``a/b_3/c``; linear
weights (out, in) become kernels (in, out); the patch-embedding conv (O, I, kh, kw) becomes
(kh, kw, I, O); LayerNorm ``weight`` becomes ``scale``. The official layout (weights under
``"model"``, a stage's patch merging at its end, ``head.weight``, buffers saved) is recognised
and mapped onto timm's (merging at the start of the next stage, ``head.fc``); so is transformers'
(``swin.embeddings...``, separate query/key/value: :mod:`swinjax.weights.hf_layout`).

Swin V2 (timm's ``SwinTransformerV2``, a model with ``version=2``) goes through the same renames:
its extra leaves ``q_bias``, ``v_bias`` and ``logit_scale`` keep their names and shapes, the
position-bias MLP is two linears (``cpb_mlp.0``, ``cpb_mlp.2``), and its derived buffers
(``relative_coords_table``, ``relative_position_index``, ``attn_mask``) are dropped. A checkpoint
of the other family than the model's is refused by name (:mod:`swinjax.weights.version`).

A checkpoint of another size is adapted as timm's ``checkpoint_filter_fn`` (V1's; V2's does the
same but has no tables to resize: its coordinate table is recomputed for the model's windows and
``pretrained_window_sizes``) does for a timm model of
the new size created with pretrained weights: derived buffers dropped, relative position bias tables
resized to the model's windows, the patch embedding resampled to a new patch size, an absolute
position embedding (``ape``: the official code's; timm's Swin has none) interpolated to the new
grid, by numpy versions of timm's functions of the same names (:mod:`swinjax.weights.resample`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flax import traverse_util

from swinjax.errors import CheckpointMismatchError
from swinjax.models import param_shapes
from swinjax.models.layers import windows
from swinjax.weights import hf_layout, version
from swinjax.weights.mismatch import mismatch_message
from swinjax.weights.resample import (
    resample_abs_pos_embed,
    resample_patch_embed,
    resize_rel_pos_bias_table,
)

# Buffers that the official checkpoints save and that swinjax derives from shapes (V2's
# relative_coords_table and k_bias too).
_BUFFER_SUFFIXES = ("relative_position_index", "attn_mask", "relative_coords_table", "k_bias")
# Tensors that keep their name and layout (V2's q_bias, v_bias and logit_scale among them).
_AS_IS = ("relative_position_bias_table", "absolute_pos_embed", "q_bias", "v_bias", "logit_scale")
_NORM_MODULE = re.compile(r"(^|\.)norm\d?$")
_REL_TABLE = re.compile(r"^layers\.(\d+)\.blocks\.\d+\.attn\.relative_position_bias_table$")
HEAD_MODES = ("load", "reset", "auto")


@dataclasses.dataclass(frozen=True)
class Resized:
    """One checkpoint tensor adapted to the model: timm key, shapes in the checkpoint's layout."""

    key: str
    from_shape: tuple[int, ...]
    to_shape: tuple[int, ...]
    how: str


@dataclasses.dataclass
class LoadReport:
    """What :func:`convert_checkpoint` did with each tensor (keys in timm's naming).

    ``loaded``: checkpoint tensors taken as they are; ``resized``: adapted to the model;
    ``unused``: checkpoint keys left out (``skip``, or a head being re-initialised); ``missing``:
    model params not in the result (initialise them); ``buffers``: derived buffers dropped;
    ``head_reset``: (checkpoint classes or None without a head, model classes) when the
    classifier is left for re-initialisation; ``coordinates``: for a V2 model, the windows its
    position-bias coordinates are computed for and scaled by; ``notes``: what the caller should
    know about the weights (a V2 checkpoint's coordinates scaled for other windows:
    :mod:`.version`).
    """

    layout: str = "timm"
    loaded: list[str] = dataclasses.field(default_factory=list)
    resized: list[Resized] = dataclasses.field(default_factory=list)
    unused: list[str] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    buffers: list[str] = dataclasses.field(default_factory=list)
    head_reset: tuple[int | None, int] | None = None
    source: str = ""
    coordinates: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)


def unwrap_state_dict(tree: Mapping[str, Any]) -> Mapping[str, Any]:
    """The tensors' mapping inside a training checkpoint's ``"model"`` / ``"state_dict"``
    wrappers (the mapping itself where it has none)."""
    for wrapper in ("model", "state_dict"):
        if isinstance(tree.get(wrapper), Mapping):
            tree = tree[wrapper]
    return tree


def _numpy_tensors(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Unwrapped (:func:`unwrap_state_dict`), as numpy arrays, without DataParallel's
    ``module.`` prefix."""
    return {
        k.removeprefix("module."): np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        for k, v in unwrap_state_dict(state_dict).items()
    }


def _timm_layout(
    state_dict: Mapping[str, Any],
) -> tuple[dict[str, np.ndarray], str, dict[str, np.ndarray]]:
    """(timm-named tensors, "timm", "official" or "transformers", dropped buffers by key)."""
    sd = _numpy_tensors(state_dict)
    if hf_layout.is_transformers_layout(sd):
        if version.checkpoint_version(list(sd)) == 2:
            raise CheckpointMismatchError(
                "transformers' Swinv2 layout is not supported; load timm's or the official "
                "checkpoint of the same model instead (e.g. hf-hub:timm/swinv2_tiny_window8_256."
                "ms_in1k)"
            )
        timm_sd, buffers = hf_layout.transformers_to_timm(sd)
        return timm_sd, "transformers", {k: sd[k] for k in buffers}
    official = "layers.0.downsample.reduction.weight" in sd
    out, buffers = {}, {}
    for k, v in sd.items():
        if k.endswith(_BUFFER_SUFFIXES):
            buffers[k] = v
            continue
        if official:
            k = re.sub(r"layers\.(\d+)\.downsample", _next_stage, k)
            k = re.sub(r"^head\.(weight|bias)$", r"head.fc.\1", k)
        out[k] = v
    return out, ("official" if official else "timm"), buffers


def _next_stage(m: re.Match) -> str:
    return f"layers.{int(m.group(1)) + 1}.downsample"


def to_timm_layout(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Unwraps, drops derived buffers, and moves an official checkpoint onto timm's names."""
    return _timm_layout(state_dict)[0]


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
    if leaf in _AS_IS:
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


def _timm_key(path: tuple[str, ...]) -> str:
    """The timm key that produces a flax path."""
    *modules, leaf = path
    parts = [re.sub(r"_(\d+)$", r".\1", m) for m in modules]
    leaf = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    return ".".join([*parts, leaf])


def params_to_timm(params: Any) -> dict[str, np.ndarray]:
    """A swinjax params tree as a timm-layout state dict (the inverse of :func:`_flax_leaf`)."""
    out = {}
    for path, value in traverse_util.flatten_dict(params).items():
        v = np.asarray(value)
        if path[-1] == "kernel":
            v = v.transpose(3, 2, 0, 1) if v.ndim == 4 else v.T
        out[_timm_key(path)] = v
    return out


def params_from_timm(
    state_dict: Mapping[str, Any], model: Any | None = None, *, skip: Sequence[str] = ()
) -> dict:
    """A timm or official Swin state dict (name -> array) as a swinjax params pytree.

    With ``model`` (a :class:`swinjax.models.swin.SwinTransformer`), the checkpoint is adapted to
    the model's size (:func:`convert_checkpoint`) and checked: a missing or unexpected key, or a
    shape that cannot be adapted, raises :class:`CheckpointMismatchError` naming the key; dtypes
    follow the model's param_dtype. ``skip``: timm key prefixes (``("head",)``) left out on both
    sides, so the result lacks those params.
    """
    if model is not None:
        return convert_checkpoint(state_dict, model, skip=skip)[0]
    flat = {}
    for k, v in to_timm_layout(state_dict).items():
        if not _skipped(k, skip):
            path, arr = _flax_leaf(k, v)
            flat[path] = arr
    return traverse_util.unflatten_dict(flat)


def _skipped(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def convert_checkpoint(
    state_dict: Mapping[str, Any], model: Any, *, skip: Sequence[str] = (), head: str = "load"
) -> tuple[dict, LoadReport]:
    """``(params, report)``: a checkpoint adapted to ``model`` as timm's filter does.

    ``head``: "load" (the classifier must fit), "reset" (always left for re-initialisation) or
    "auto" (re-initialised where its shape differs or the checkpoint has none, as timm drops a
    classifier of another num_classes). ``params`` lacks the params listed in
    ``report.missing``. Raises :class:`CheckpointMismatchError` for anything else that does not
    fit (another depth, width or number of heads), naming the first few offending keys of each
    kind, their counts, and the architecture fields in which the checkpoint differs.
    """
    if head not in HEAD_MODES:
        raise ValueError(f"head={head!r} is not one of {HEAD_MODES}")
    sd, layout, buffers = _timm_layout(state_dict)
    wrong_family = version.family_mismatch(list(sd), model)
    if wrong_family:
        raise CheckpointMismatchError(wrong_family)
    expected = {
        _timm_key(p): (p, s) for p, s in traverse_util.flatten_dict(param_shapes(model)).items()
    }
    reset = head == "reset" or _skipped("head", skip)
    reset = reset or (head == "auto" and not _head_fits(sd, expected))
    drop = lambda k: _skipped(k, skip) or (reset and k.startswith("head."))
    report = LoadReport(
        layout=layout, buffers=list(buffers), coordinates=version.coordinate_summary(model) or ""
    )
    note = version.coordinate_note(buffers, model)
    report.notes += [note] if note else []
    if reset and (model.num_classes or "head.fc.weight" in sd):
        ckpt_head = sd.get("head.fc.weight")
        report.head_reset = (None if ckpt_head is None else ckpt_head.shape[0], model.num_classes)
    missing = [k for k in expected if k not in sd and not drop(k)]
    unexpected = [k for k in sd if k not in expected and not drop(k)]
    report.unused = [k for k in sd if drop(k)]
    kept = {k: v for k, v in sd.items() if k in expected and not drop(k)}
    flat, mismatched = _fit(kept, expected, model, report)
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            mismatch_message(
                sd, model, missing=missing, unexpected=unexpected, mismatched=mismatched
            )
        )
    report.missing = [k for k in expected if drop(k) or k not in sd]
    return traverse_util.unflatten_dict(flat), report


def _fit(
    sd: dict, expected: dict, model: Any, report: LoadReport
) -> tuple[dict, list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """``(flax params, shape mismatches)``: the tensors of ``sd`` (keys the model has) adapted to
    the model's shapes, each recorded in ``report`` (loaded or resized); those that do not fit
    as (key, checkpoint shape, the model's shape in the checkpoint's layout)."""
    flat, mismatched = {}, []
    for k, v in sd.items():
        path, want = expected[k]
        try:
            adapted, how = _adapt(k, v, tuple(want.shape), model)
        except ValueError as e:
            raise CheckpointMismatchError(f"{k!r} cannot be resized: {e}") from None
        arr = _flax_leaf(k, adapted)[1]
        if arr.shape != tuple(want.shape):
            mismatched.append((k, tuple(v.shape), _timm_shape(path, tuple(want.shape))))
            continue
        flat[path] = np.asarray(arr, dtype=want.dtype)
        if how:
            report.resized.append(Resized(k, v.shape, adapted.shape, how))
        else:
            report.loaded.append(k)
    return flat, mismatched


def _timm_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """A flax parameter's shape in timm's layout (the inverse of :func:`_flax_leaf`'s)."""
    if path[-1] != "kernel":
        return shape
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]


def _head_fits(sd: dict[str, np.ndarray], expected: dict) -> bool:
    keys = {k for k in expected if k.startswith("head.")}
    if keys != {k for k in sd if k.startswith("head.")}:
        return False
    return all(_flax_leaf(k, sd[k])[1].shape == tuple(expected[k][1].shape) for k in keys)


def _adapt(key: str, v: np.ndarray, want: tuple[int, ...], model: Any) -> tuple[np.ndarray, str]:
    """(tensor in timm layout fitted to the model's flax shape ``want``, what was done or "");
    ValueError where a resizable tensor cannot be resized."""
    table = _REL_TABLE.match(key)
    if table and v.ndim == 2 and v.shape[1] == want[1]:
        window = model.stage_specs()[int(table.group(1))].window
        out = resize_rel_pos_bias_table(v, window, want[0])
        return out, "" if out is v else f"window {window[0]}x{window[1]}"
    if key == "patch_embed.proj.weight" and v.ndim == 4 and v.shape[:2] == want[3:1:-1]:
        out = resample_patch_embed(v, want[:2])
        return out, "" if out is v else f"patch {want[0]}x{want[1]}"
    if key == "absolute_pos_embed" and v.ndim == 3 and v.shape[2] == want[2]:
        img, patch = windows.to_pair(model.img_size), windows.to_pair(model.patch_size)
        grid = (img[0] // patch[0], img[1] // patch[1])
        out = resample_abs_pos_embed(v, grid)
        return out, "" if out is v else f"grid {grid[0]}x{grid[1]}"
    return v, ""
