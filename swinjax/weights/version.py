"""Swin V1 or Swin V2: which family a checkpoint is (read from its tensor names), the error for a
checkpoint of the other family than the model's, and a note where a V2 checkpoint's
position-bias coordinates were scaled for other windows than the model's.

A V2 block has ``attn.logit_scale``, ``attn.cpb_mlp.*``, ``attn.q_bias`` and ``attn.v_bias``
where a V1 block has ``attn.relative_position_bias_table`` and ``attn.qkv.bias``; the rest of the
two networks shares its names, so without this check a V1 checkpoint in a V2 model would fail with
a list of missing and unexpected keys that does not say why.

V2's attention has nothing to resize for another window: its coordinate table is recomputed from
the model's window and ``pretrained_window_sizes`` (timm's ``checkpoint_filter_fn`` for V2 only
drops it). The official checkpoints save that table (``relative_coords_table``), so from them the
window their coordinates were scaled by (the pretrained window, or the window itself) can be read
back; :func:`coordinate_note` compares it with the model's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swinjax.models.layers import windows

_V2_LEAVES = ("attn.logit_scale", "attn.cpb_mlp.0.weight", "attn.q_bias")
_V1_LEAVES = ("attn.relative_position_bias_table",)
_COORDS = re.compile(r"^layers\.(\d+)\.blocks\.\d+\.attn\.relative_coords_table$")
_FAMILY = {1: "Swin V1 (SwinTransformer)", 2: "Swin V2 (SwinTransformerV2)"}
_EXAMPLES = {1: "swin_t", 2: "swinv2_tiny_window8_256"}
LOG_RANGE = 8.0  # timm's coordinates: scaled to [-8, 8], then sign(x) log2(1 + |x|) / log2(8)


def checkpoint_version(keys: Sequence[str]) -> int | None:
    """2 for a Swin V2 checkpoint, 1 for a V1 one, None where it has no attention block."""
    if any(k.endswith(_V2_LEAVES) or ".logit_scale" in k for k in keys):
        return 2
    if any(k.endswith(_V1_LEAVES) for k in keys):
        return 1
    return None


def family_mismatch(keys: Sequence[str], model: Any) -> str | None:
    """The error's text where the checkpoint (timm-named ``keys``) is the other family than
    ``model`` (its ``version``), else None."""
    found = checkpoint_version(keys)
    if found is None or found == model.version:
        return None
    markers = _V2_LEAVES if found == 2 else _V1_LEAVES
    example = next(
        (k for m in markers for k in keys if k.endswith(m)),
        next((k for k in keys if ".logit_scale" in k), ""),
    )
    return (
        f"the checkpoint is {_FAMILY[found]} (it has {example!r}) but the model is "
        f"{_FAMILY[model.version]} (version={model.version}): the two families' attention "
        f"blocks have different parameters, so neither loads into the other. Fix: build the "
        f"model with version={found} (a preset of that family, e.g. "
        f"create_model({_EXAMPLES[found]!r}), or model_kwargs version={found} with the "
        f"checkpoint's sizes), or load a {_FAMILY[model.version].split(' (')[0]} checkpoint."
    )


def _reference_window(table_1HW2: np.ndarray) -> tuple[int | None, int | None]:
    """The window a saved ``relative_coords_table`` (1, 2wh-1, 2ww-1, 2) was scaled by, per axis
    (None where the window is 1: no offset to read it from)."""
    out = []
    for axis in range(2):
        size = (table_1HW2.shape[1 + axis] + 1) // 2
        top = float(np.max(table_1HW2[..., axis]))
        if size < 2 or top <= 0:
            out.append(None)
            continue
        scaled = 2.0 ** (top * math.log2(LOG_RANGE)) - 1.0  # = 8 (size - 1) / (reference - 1)
        out.append(round(LOG_RANGE * (size - 1) / scaled) + 1)
    return out[0], out[1]


def coordinate_note(buffers: Mapping[str, np.ndarray], model: Any) -> str | None:
    """A note where a V2 checkpoint's saved coordinate tables were scaled by other windows than
    ``model``'s (its window, or its ``pretrained_window_sizes``), with the setting that matches
    the checkpoint; None where they agree or the checkpoint does not say."""
    if model.version != 2:
        return None
    saved: dict[int, tuple[int | None, int | None]] = {}
    for key, table in buffers.items():
        m = _COORDS.match(key)
        if m and np.ndim(table) == 4:
            saved.setdefault(int(m.group(1)), _reference_window(np.asarray(table)))
    specs = model.stage_specs()
    differ = []
    for i, window in saved.items():
        if i >= len(specs):
            continue
        pretrained = specs[i].pretrained_window
        used = pretrained if pretrained[0] > 0 else specs[i].window
        if any(s is not None and s != u for s, u in zip(window, used, strict=True)):
            differ.append(i)
    if not differ:
        return None
    ckpt = tuple(_shown(saved.get(i, (None, None))) for i in range(len(specs)))
    return (
        f"the checkpoint's position-bias coordinates were scaled for windows {ckpt} (stages "
        f"{differ} differ from this model's, window {windows.to_pair(model.window_size)} with "
        f"pretrained_window_sizes {tuple(model.pretrained_window_sizes)}); to continue from it "
        "as timm's fine-tuned V2 models do, set pretrained_window_sizes to those windows"
    )


def coordinate_summary(model: Any) -> str | None:
    """For a V2 model, how its position-bias coordinates are computed (they are never loaded):
    the windows per stage and the windows that scale them (``pretrained_window_sizes``, or each
    stage's own window where 0); None for V1."""
    if model.version != 2:
        return None
    specs = model.stage_specs()
    scales = [s.pretrained_window if s.pretrained_window[0] > 0 else s.window for s in specs]
    given = tuple(model.pretrained_window_sizes) or "() (each stage's window)"
    return (
        f"position-bias coordinates computed for windows {tuple(_shown(s.window) for s in specs)}, "
        f"scaled by {tuple(_shown(w) for w in scales)} (pretrained_window_sizes {given})"
    )


def _shown(window: tuple[int | None, int | None]) -> int | str:
    if window[0] is not None and window[0] == window[1]:
        return window[0]
    return "?" if window == (None, None) else f"{window[0]}x{window[1]}"
