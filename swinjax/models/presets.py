"""The preset table (every architecture number in one place), ``create_model`` and the counts
``python -m swinjax.model --list`` prints (parameters; forward GFLOPs by PyTorch's rule and by
XLA's cost analysis).

    model = create_model("swin_t", num_classes=100)     # any SwinTransformer field overridden
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from swinjax.errors import ConfigError
from swinjax.models import flops
from swinjax.models.layers import windows
from swinjax.models.swin import SwinTransformer

# Swin V2 (version=2) as timm's swin_transformer_v2.py registers it: name -> (embed dim, depths,
# heads, window, image size, pretrained window sizes, classes). Every one keeps timm's constructor
# default drop_path_rate, 0.1.
_T, _S = ((2, 2, 6, 2), (3, 6, 12, 24)), ((2, 2, 18, 2), (3, 6, 12, 24))
_B, _L = ((2, 2, 18, 2), (4, 8, 16, 32)), ((2, 2, 18, 2), (6, 12, 24, 48))
_FROM_12 = (12, 12, 12, 6)
_V2_TABLE = {
    "swinv2_tiny_window8_256": (96, *_T, 8, 256, (), 1000),
    "swinv2_tiny_window16_256": (96, *_T, 16, 256, (), 1000),
    "swinv2_small_window8_256": (96, *_S, 8, 256, (), 1000),
    "swinv2_small_window16_256": (96, *_S, 16, 256, (), 1000),
    "swinv2_base_window8_256": (128, *_B, 8, 256, (), 1000),
    "swinv2_base_window16_256": (128, *_B, 16, 256, (), 1000),
    "swinv2_base_window12_192": (128, *_B, 12, 192, (), 21841),
    "swinv2_base_window12to16_192to256": (128, *_B, 16, 256, _FROM_12, 1000),
    "swinv2_base_window12to24_192to384": (128, *_B, 24, 384, _FROM_12, 1000),
    "swinv2_large_window12_192": (192, *_L, 12, 192, (), 21841),
    "swinv2_large_window12to16_192to256": (192, *_L, 16, 256, _FROM_12, 1000),
    "swinv2_large_window12to24_192to384": (192, *_L, 24, 384, _FROM_12, 1000),
}
_SWIN_V2: dict[str, dict[str, Any]] = {
    name: dict(
        version=2,
        img_size=img,
        num_classes=classes,
        embed_dim=dim,
        depths=depths,
        num_heads=heads,
        window_size=window,
        pretrained_window_sizes=pretrained,
        drop_path_rate=0.1,
    )
    for name, (dim, depths, heads, window, img, pretrained, classes) in _V2_TABLE.items()
}

# One table for every architecture number. Small-image presets (32x32) follow the Swin setting of
# the small-dataset literature: patch 2, window 4, embed 96, depths (2, 6, 4), heads (3, 6, 12),
# MLP ratio 2.
PRESETS: dict[str, dict[str, Any]] = {
    "keras_example": dict(
        img_size=32,
        patch_size=2,
        num_classes=100,
        embed_dim=64,
        depths=(2, 0),
        num_heads=(8, 8),
        window_size=2,
        mlp_ratio=4.0,
        qkv_bias=True,
        drop_rate=0.03,
        attn_drop_rate=0.03,
        drop_path_rate=0.03,
        ape=True,
        patch_norm=False,
        pos_drop_rate=0.0,
        merge_norm=False,
        final_norm=False,
        drop_path_mode="element",
        drop_path_schedule="constant",
        weight_init="keras",
    ),
    "swin_t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "swin_s": dict(
        embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3
    ),
    "swin_b": dict(
        embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5
    ),
    "swin_l": dict(
        embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), drop_path_rate=0.5
    ),
    "swin_cifar_t": dict(
        img_size=32,
        patch_size=2,
        num_classes=100,
        embed_dim=96,
        depths=(2, 6, 4),
        num_heads=(3, 6, 12),
        window_size=4,
        mlp_ratio=2.0,
        drop_path_rate=0.1,
    ),
    "swin_cifar_s": dict(
        img_size=32,
        patch_size=2,
        num_classes=100,
        embed_dim=128,
        depths=(2, 6, 4),
        num_heads=(4, 8, 16),
        window_size=4,
        mlp_ratio=2.0,
        drop_path_rate=0.2,
    ),
    "swinv2_cifar_t": dict(
        version=2,
        img_size=32,
        patch_size=2,
        num_classes=100,
        embed_dim=96,
        depths=(2, 6, 4),
        num_heads=(3, 6, 12),
        window_size=4,
        mlp_ratio=2.0,
        drop_path_rate=0.1,
    ),
    **_SWIN_V2,
    # A few thousand parameters, for tests and one-minute demos.
    "tiny_test": dict(
        img_size=16,
        patch_size=2,
        num_classes=10,
        embed_dim=16,
        depths=(2, 2),
        num_heads=(2, 4),
        window_size=4,
        mlp_ratio=2.0,
        drop_path_rate=0.1,
    ),
}


def create_model(name: str, **overrides: Any) -> SwinTransformer:
    """A preset by name, with any field overridden (``create_model("swin_t", num_classes=100)``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(SwinTransformer)} - {"parent", "name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"unknown SwinTransformer field(s) {unknown}; {hint}valid: {sorted(fields)}"
        )
    kwargs = {**PRESETS[name], **overrides}
    for key in ("depths", "num_heads", "stem_channels", "stem_strides", "pretrained_window_sizes"):
        if key in kwargs:
            kwargs[key] = tuple(int(v) for v in kwargs[key])
    for key in ("img_size", "patch_size", "window_size"):
        if not isinstance(kwargs.get(key, 0), int):
            kwargs[key] = tuple(int(v) for v in kwargs[key])
    for key in ("dtype", "param_dtype"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = jnp.dtype(kwargs[key])
    return SwinTransformer(**kwargs)


def param_shapes(model: SwinTransformer) -> Any:
    """The parameter pytree as ShapeDtypeStructs, without allocating anything."""
    img = windows.to_pair(model.img_size)
    x = jax.ShapeDtypeStruct((1, *img, model.in_chans), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)["params"]


def count_params(params: Any) -> int:
    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def _abstract_forward(model: SwinTransformer) -> tuple[Any, Any, Any]:
    """(forward function of (params, images), abstract params, an abstract 1-image batch)."""
    img = windows.to_pair(model.img_size)
    x = jax.ShapeDtypeStruct((1, *img, model.in_chans), jnp.float32)
    return (lambda p, v: model.apply({"params": p}, v)), param_shapes(model), x


def forward_gflops(model: SwinTransformer) -> float:
    """Forward GFLOPs per image, from XLA's cost analysis of the lowered (uncompiled) program:
    every op, elementwise ones included."""
    forward, params, x = _abstract_forward(model)
    return flops.xla_flops(jax.jit(forward).lower(params, x)) / 1e9


def matmul_flops_per_image(model: SwinTransformer) -> int:
    """Forward FLOPs per image by PyTorch's rule (:mod:`swinjax.models.flops`: matrix products and
    convolutions only), the figure timm's models are quoted with. Traced with the reference
    kernel set, whose attention is matrix products (the cpu set computes small windows' by
    elementwise products, the same arithmetic outside dot_general)."""
    forward, params, x = _abstract_forward(model.clone(kernels="reference"))
    return flops.matmul_flops(forward, params, x)


def list_presets(names: Sequence[str] = ()) -> str:
    """A table of the presets ``names`` (empty: every one): Swin version, image size, window,
    classes, parameters and forward GFLOPs per image, by PyTorch's rule (``matmul``, comparable
    with timm's) and by XLA's cost analysis (``xla``, elementwise ops included)."""
    for name in names:
        create_model(name)  # an unknown name: the error that lists the presets
    lines = [
        f"{'preset':<35} {'v':>1} {'image':>7} {'window':>6} {'classes':>7} {'params':>12} "
        f"{'GFLOPs matmul':>13} {'GFLOPs xla':>10}"
    ]
    for name in names or PRESETS:
        model = create_model(name)
        img, window = windows.to_pair(model.img_size), windows.to_pair(model.window_size)
        lines.append(
            f"{name:<35} {model.version:>1} {img[0]:>3}x{img[1]:<3} "
            f"{window[0]:>3}x{window[1]:<2} {model.num_classes:>7} "
            f"{count_params(param_shapes(model)):>12,} "
            f"{matmul_flops_per_image(model) / 1e9:>13.3f} {forward_gflops(model):>10.3f}"
        )
    return "\n".join(lines)
