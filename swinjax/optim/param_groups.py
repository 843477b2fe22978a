"""Parameter groups for fine-tuning: layer-wise learning-rate decay and freezing.

Layer-wise decay follows timm (``param_groups_layer_decay`` with ``SwinTransformer.group_matcher``
at ``coarse=False``): the patch embedding is layer 0; then one layer per Swin block in order, a
stage's patch merging in the layer of that stage's first block; the final norm in the layer of
the last block; everything else (the head, an absolute position embedding) in the last layer.
A parameter of layer ``i`` of ``L`` learns at ``layer_decay ** (L - 1 - i)`` times the learning
rate: the head at the full rate, each earlier block scaled down once more, the patch embedding
lowest. ``layer_decay`` is an array hyperparameter (``state.hparams``): a sweep over it compiles
``train_step`` once.

Freezing: ``trainable_mask(params, freeze)`` is a tree of float32 scalars, 1.0 where a parameter
trains and 0.0 where it is frozen (its gradient and update are zeroed, so it never changes). It
lives in the train state as arrays, so sweeps over ``freeze`` compile once too. ``freeze`` is ""
(nothing), ``"backbone"`` (everything but the head: a linear probe), or comma-separated regular
expressions searched in parameter paths such as ``layers_0/blocks_1/attn/qkv/kernel``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

from swinjax.errors import ConfigError

_STEM = re.compile(r"^patch_embed/")
_DOWNSAMPLE = re.compile(r"^layers_(\d+)/downsample/")
_BLOCK = re.compile(r"^layers_(\d+)/blocks_(\d+)/")
_NORM = re.compile(r"^norm/")


def _timm_layer_ordinal(path: str) -> tuple[float, ...]:
    """timm's ordinal of a parameter: (0,) stem, (1, i, j) block j of stage i (a merging as
    block 0), (1, inf) the final norm (joins the previous group), (inf,) the rest."""
    if _STEM.match(path):
        return (0.0,)
    if m := _DOWNSAMPLE.match(path):
        return (1.0, float(m[1]), 0.0)
    if m := _BLOCK.match(path):
        return (1.0, float(m[1]), float(m[2]))
    if _NORM.match(path):
        return (1.0, math.inf)
    return (math.inf,)


def layer_ids(params: Any) -> tuple[dict[tuple[str, ...], int], int]:
    """``({path tuple: layer id}, number of layers)`` for the parameter tree ``params``."""
    paths = list(traverse_util.flatten_dict(params))
    keys = {p: _timm_layer_ordinal("/".join(p)) for p in paths}
    ids, lid = {}, -1
    for key in sorted(set(keys.values())):
        if lid < 0 or key != (1.0, math.inf):  # the final norm joins the last block's layer
            lid += 1
        ids[key] = lid
    return {p: ids[k] for p, k in keys.items()}, lid + 1


def lr_scales(params: Any, layer_decay: jax.Array) -> Any:
    """Per parameter, ``layer_decay ** (L - 1 - layer id)`` (a traced scalar each)."""
    ids, num_layers = layer_ids(params)
    flat = {p: layer_decay ** jnp.float32(num_layers - 1 - i) for p, i in ids.items()}
    return traverse_util.unflatten_dict(flat)


def scale_updates(updates: Any, layer_decay: jax.Array, trainable: Any) -> Any:
    """The optimizer's updates times each parameter's layer-decay scale and trainable flag."""
    scales = lr_scales(updates, layer_decay)
    return jax.tree.map(lambda u, s, t: u * (s * t).astype(u.dtype), updates, scales, trainable)


def trainable_mask(params: Any, freeze: str) -> Any:
    """1.0 for parameters that train, 0.0 for frozen ones (see the module docstring); a pattern
    that matches no parameter is an error naming it."""
    flat = {"/".join(p): p for p in traverse_util.flatten_dict(params)}
    frozen: set[str] = set()
    for pattern in parse_freeze(freeze):
        if pattern == "backbone":
            hits = {name for name in flat if not name.startswith("head/")}
        else:
            regex = re.compile(pattern)
            hits = {name for name in flat if regex.search(name)}
        if not hits:
            raise ConfigError(
                f"config.freeze: {pattern!r} matches no parameter; paths look like "
                "layers_0/blocks_1/attn/qkv/kernel, patch_embed/proj/kernel, head/fc/bias"
            )
        frozen |= hits
    mask = {p: jnp.float32(name not in frozen) for name, p in flat.items()}
    return traverse_util.unflatten_dict(mask)


def parse_freeze(freeze: str) -> list[str]:
    """The patterns of ``config.freeze``, each checked to compile."""
    patterns = [p.strip() for p in freeze.split(",") if p.strip()]
    for p in patterns:
        if p != "backbone":
            try:
                re.compile(p)
            except re.error as e:
                raise ConfigError(
                    f"config.freeze: {p!r} is not a regular expression: {e}"
                ) from None
    return patterns
