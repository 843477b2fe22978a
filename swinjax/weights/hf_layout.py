"""Hugging Face transformers' Swin layout (``SwinForImageClassification``, ``SwinModel``) -> timm's
names, which :mod:`swinjax.weights.convert` then loads.

    sd = load_state_dict("model.safetensors")        # e.g. microsoft/swin-tiny-patch4-window7-224
    is_transformers_layout(sd)                       # True
    timm_sd, buffers = transformers_to_timm(sd)      # buffers: derived tensors left out
    hub_sd = timm_to_transformers(params_to_timm(params))   # the way back, the hub's names

The names, with or without the ``swin.`` prefix (``SwinModel`` saves none), in both spellings:
the hub's files (what ``save_pretrained`` writes: ``attention.self.query``,
``attention.output.dense``, ``intermediate.dense``, ``output.dense``) and the module names of
transformers >= 5 (``attention.q_proj``, ``attention.o_proj``, ``mlp.fc1``, ``mlp.fc2``). Query,
key and value are separate linears, concatenated into timm's ``qkv`` in that order (timm splits
its output into q, k, v, each heads x head_dim, as transformers reshapes each). A stage's patch
merging is saved at its end (``encoder.layers.i.downsample``), timm's at the start of stage i+1.
The relative position tables are the same (rows indexed as timm indexes them); the patch
merging's 2x2 concatenation order is the official one, which timm shares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from swinjax.errors import CheckpointMismatchError

MARKER = "embeddings.patch_embeddings.projection.weight"
_PREFIX = "swin."
_TOP = {
    "embeddings.patch_embeddings.projection": "patch_embed.proj",
    "embeddings.norm": "patch_embed.norm",
    "layernorm": "norm",
    "classifier": "head.fc",
}
# timm's block modules -> the hub files' names (what save_pretrained writes).
_BLOCK_HUB = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
# Both spellings -> timm's: the hub's and transformers 5's module names.
_BLOCK = {hub: timm for timm, hub in _BLOCK_HUB.items()} | {
    "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_TABLES = (
    "attention.self.relative_position_bias_table",
    "attention.relative_position_bias.relative_position_bias_table",
)
_QKV = {
    "attention.self.query": 0,
    "attention.self.key": 1,
    "attention.self.value": 2,
    "attention.q_proj": 0,
    "attention.k_proj": 1,
    "attention.v_proj": 2,
}
_HUB_QKV = ("query", "key", "value")
_BUFFERS = ("relative_position_index",)
_ENCODER = re.compile(r"^encoder\.layers\.(\d+)\.(?:blocks\.(\d+)\.(.+)|downsample\.(.+))$")


def is_transformers_layout(state_dict: Mapping[str, object]) -> bool:
    """Whether a (unwrapped) state dict is in transformers' layout: its patch embedding is
    ``[swin.]embeddings.patch_embeddings.projection.weight``."""
    return MARKER in state_dict or _PREFIX + MARKER in state_dict


def transformers_to_timm(
    state_dict: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], list[str]]:
    """``(timm-named tensors, dropped buffer keys)``. Keys it does not know are kept as they are
    (the loader then names them as unexpected); a block lacking one of query, key and value
    raises :class:`CheckpointMismatchError` naming it."""
    out: dict[str, np.ndarray] = {}
    buffers: list[str] = []
    qkv: dict[tuple[str, str], dict[int, tuple[str, np.ndarray]]] = {}
    for key, value in state_dict.items():
        name = key.removeprefix(_PREFIX)
        if name.endswith(_BUFFERS):
            buffers.append(key)
        elif name == "embeddings.position_embeddings":  # use_absolute_embeddings: (1, N, C)
            out["absolute_pos_embed"] = value
        elif m := _ENCODER.match(name):
            stage, block, rest, merging = m.groups()
            if merging is not None:
                out[f"layers.{int(stage) + 1}.downsample.{merging}"] = value
                continue
            prefix = f"layers.{stage}.blocks.{block}"
            module, _, leaf = rest.rpartition(".")
            if rest in _TABLES:
                out[f"{prefix}.attn.relative_position_bias_table"] = value
            elif module in _QKV:
                qkv.setdefault((prefix, leaf), {})[_QKV[module]] = (key, value)
            elif module in _BLOCK:
                out[f"{prefix}.{_BLOCK[module]}.{leaf}"] = value
            else:
                out[key] = value
        else:
            module, _, leaf = name.rpartition(".")
            out[f"{_TOP[module]}.{leaf}" if module in _TOP else key] = value
    for (prefix, leaf), parts in qkv.items():
        out[f"{prefix}.attn.qkv.{leaf}"] = _merge_qkv(parts, leaf)
    return out, buffers


def _merge_qkv(parts: dict[int, tuple[str, np.ndarray]], leaf: str) -> np.ndarray:
    """Query, key and value (weights (C, C) or biases (C,)) stacked along the output axis."""
    if len(parts) < 3:
        present = ", ".join(repr(key) for key, _ in parts.values())
        lacking = ", ".join(_HUB_QKV[i] for i in range(3) if i not in parts)
        raise CheckpointMismatchError(
            f"the transformers-layout checkpoint has {present} but no {lacking} {leaf} of that "
            "block: the file is truncated or not a Swin checkpoint. Fix: download it again, or "
            "pass a complete SwinForImageClassification / SwinModel state dict"
        )
    return np.concatenate([parts[i][1] for i in range(3)], axis=0)


def timm_to_transformers(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A timm-layout state dict (:func:`swinjax.weights.params_to_timm`'s) in the names of a
    ``SwinForImageClassification`` file on the hub (``save_pretrained``'s), ``qkv`` split into
    query, key and value. The file's ``config.json`` is not written. Raises
    :class:`CheckpointMismatchError` for a tensor transformers' Swin has no place for (a
    convolutional stem)."""
    out: dict[str, np.ndarray] = {}
    top = {timm: hf for hf, timm in _TOP.items()}
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        block = re.match(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$", module)
        merging = re.match(r"^layers\.(\d+)\.downsample\.(.+)$", key)
        if key == "absolute_pos_embed":
            out[_PREFIX + "embeddings.position_embeddings"] = value
        elif module in top:
            hf = top[module]
            out[f"{hf if hf == 'classifier' else _PREFIX + hf}.{leaf}"] = value
        elif merging:
            out[f"{_PREFIX}encoder.layers.{int(merging[1]) - 1}.downsample.{merging[2]}"] = value
        elif block:
            prefix = f"{_PREFIX}encoder.layers.{block[1]}.blocks.{block[2]}"
            out.update(_block_to_transformers(prefix, block[3], leaf, value, key))
        else:
            raise CheckpointMismatchError(
                f"{key!r} has no place in transformers' Swin (a model with a convolutional "
                "stem or other extensions cannot be written in that layout); use timm's layout"
            )
    return out


def _block_to_transformers(
    prefix: str, module: str, leaf: str, value: np.ndarray, key: str
) -> dict[str, np.ndarray]:
    """One timm block tensor (``module``: its name inside the block) under the hub's names."""
    if leaf == "relative_position_bias_table":
        return {f"{prefix}.{_TABLES[0]}": value}
    if module == "attn.qkv":
        parts = np.split(value, 3, axis=0)
        return {
            f"{prefix}.attention.self.{n}.{leaf}": t for n, t in zip(_HUB_QKV, parts, strict=True)
        }
    if module in _BLOCK_HUB:
        return {f"{prefix}.{_BLOCK_HUB[module]}.{leaf}": value}
    raise CheckpointMismatchError(f"{key!r} has no place in transformers' Swin block")
