"""The error for a checkpoint that does not fit a model: a few mismatches of each kind with their
counts, the architecture fields in which the checkpoint and the model differ (read from the
checkpoint's tensor names and shapes), and the fix. Keys are timm's names, shapes timm's layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SHOWN = 5  # mismatches listed per kind; the rest are counted
_STAGE = re.compile(r"^layers\.(\d+)\.")
_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.")
_STEM_WEIGHTS = ("patch_embed.proj.weight", "patch_embed.conv_proj.weight")


def checkpoint_architecture(sd: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The ``SwinTransformer`` fields a timm-layout state dict (V1 or V2) shows: ``embed_dim``,
    ``depths``, ``num_heads`` (None for a stage without blocks), ``mlp_ratio`` and ``ape``,
    those it has the tensors for."""
    arch: dict[str, Any] = {"ape": "absolute_pos_embed" in sd}
    stem = next((sd[k] for k in _STEM_WEIGHTS if k in sd), None)
    if stem is not None:
        arch["embed_dim"] = int(stem.shape[0])
    stages = {int(m[1]) for k in sd if (m := _STAGE.match(k))}
    if not stages:
        return arch
    blocks = {(int(m[1]), int(m[2])) for k in sd if (m := _BLOCK.match(k))}
    arch["depths"] = tuple(sum(s == i for s, _ in blocks) for i in range(max(stages) + 1))
    arch["num_heads"] = tuple(
        _heads(sd, f"layers.{i}.blocks.0.attn.") for i in range(max(stages) + 1)
    )
    fc1 = next((v for k, v in sd.items() if k.endswith("mlp.fc1.weight") and v.ndim == 2), None)
    if fc1 is not None:
        arch["mlp_ratio"] = fc1.shape[0] / fc1.shape[1]
    return arch


def _heads(sd: Mapping[str, np.ndarray], attn: str) -> int | None:
    """A block's heads: the columns of V1's bias table, the length of V2's ``logit_scale``."""
    table, scale = sd.get(attn + "relative_position_bias_table"), sd.get(attn + "logit_scale")
    if table is not None:
        return int(table.shape[1])
    return None if scale is None else int(scale.shape[0])


def _same(ckpt: Any, model: Any) -> bool:
    """Equal, a None entry of a tuple (a stage without blocks) matching anything."""
    if isinstance(ckpt, tuple):
        return len(ckpt) == len(model) and all(
            _same(c, m) for c, m in zip(ckpt, model, strict=True)
        )
    return ckpt is None or ckpt == model


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join("?" if v is None else str(v) for v in value) + ")"
    return str(value)


def architecture_differences(sd: Mapping[str, np.ndarray], model: Any) -> list[str]:
    """``"embed_dim=96 (this model: 64)"`` for each field the checkpoint shows and the model
    has otherwise (``?``: a stage without blocks, whose heads the checkpoint does not show)."""
    out = []
    for field, ckpt in checkpoint_architecture(sd).items():
        value = getattr(model, field)
        value = tuple(value) if isinstance(value, list | tuple) else value
        if not _same(ckpt, value):
            out.append(f"{field}={_shown(ckpt)} (this model: {_shown(value)})")
    return out


def network_order(key: str) -> tuple[int, ...]:
    """A sort key placing timm keys from the input to the output: patch embedding, position
    embedding, stage by stage (patch merging, then block by block), final norm, head."""
    if key.startswith("patch_embed."):
        return (0,)
    if key == "absolute_pos_embed":
        return (1,)
    if m := re.match(r"^layers\.(\d+)\.(?:blocks\.(\d+)\.)?", key):
        return (2, int(m[1]), int(m[2]) if m[2] else -1)
    return (3,) if key.startswith("norm.") else (4,)


def _first(items: Sequence[str]) -> str:
    more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def mismatch_message(
    sd: Mapping[str, np.ndarray],
    model: Any,
    *,
    missing: Sequence[str],
    unexpected: Sequence[str],
    mismatched: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]],
) -> str:
    """The error's text: counts, the first :data:`SHOWN` keys of each kind in the network's
    order (``mismatched``: (key, checkpoint shape, model shape)), what differs in the
    architecture, and the fix."""
    missing, unexpected = sorted(missing, key=network_order), sorted(unexpected, key=network_order)
    mismatched = sorted(mismatched, key=lambda m: network_order(m[0]))
    counts = [
        f"{len(items)} {kind}"
        for kind, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    lines = [f"the checkpoint does not fit the model: {', '.join(counts)}"]
    if missing:
        lines.append(f"  missing: {_first([repr(k) for k in missing])}")
    if unexpected:
        lines.append(f"  unexpected: {_first([repr(k) for k in unexpected])}")
    for key, ckpt, want in mismatched[:SHOWN]:
        lines.append(f"  shape mismatch for {key!r}: checkpoint {ckpt}, model {want}")
    if len(mismatched) > SHOWN:
        lines.append(f"  (and {len(mismatched) - SHOWN} more shape mismatches)")
    differences = architecture_differences(sd, model)
    if differences:
        lines.append(f"The checkpoint is another architecture: {'; '.join(differences)}.")
    lines.append(
        "Fix: build the model the checkpoint was trained with (its preset, or model_kwargs with "
        "the checkpoint's values), or start from weights of this model's architecture."
    )
    return "\n".join(lines)
