"""A saved model in timm's layout: ``model.safetensors`` (timm's state dict) and ``config.json``
(what timm's ``local-dir:`` and Hugging Face hub loaders read), so that

    model = timm.create_model("local-dir:OUT", pretrained=True)
    model = timm.create_model(NAME, pretrained=True, num_classes=K, **MODEL_ARGS,
                              pretrained_cfg_overlay=dict(file="OUT/model.safetensors",
                                                          num_classes=K))

build timm's ``SwinTransformer`` (``SwinTransformerV2`` for a ``version=2`` model) with the same
logits (the overlay needs ``num_classes`` too,
else timm drops the head as one of another number of classes). ``config.json`` holds
``architecture`` (a timm model name), ``num_classes``, ``num_features``, ``label_names``,
``model_args`` (every architecture number, so any size or window builds) and
``pretrained_cfg`` (input size, mean/std, crop fraction and mode, interpolation: the run's
evaluation preprocessing).

Models timm's Swin cannot build are refused, naming why: an absolute position embedding
(``ape``, the Keras example), no LayerNorm after the patch embedding, in the patch merging or
before the head, and convolutional stems.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from swinjax.errors import ConfigError
from swinjax.training.inference import Restored
from swinjax.weights import params_to_timm

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# timm's named Swin models by (embed_dim, depths, num_heads): their pretrained names at 224.
TIMM_NAMES = {
    (96, (2, 2, 6, 2), (3, 6, 12, 24)): "swin_tiny_patch4_window7_224",
    (96, (2, 2, 18, 2), (3, 6, 12, 24)): "swin_small_patch4_window7_224",
    (128, (2, 2, 18, 2), (4, 8, 16, 32)): "swin_base_patch4_window7_224",
    (192, (2, 2, 18, 2), (6, 12, 24, 48)): "swin_large_patch4_window7_224",
}
# Any other architecture: this name, its numbers replaced by model_args.
DEFAULT_NAME = "swin_tiny_patch4_window7_224"
# Swin V2 (version=2): timm's SwinTransformerV2 names, the same way.
TIMM_V2_NAMES = {
    (96, (2, 2, 6, 2), (3, 6, 12, 24)): "swinv2_tiny_window8_256",
    (96, (2, 2, 18, 2), (3, 6, 12, 24)): "swinv2_small_window8_256",
    (128, (2, 2, 18, 2), (4, 8, 16, 32)): "swinv2_base_window8_256",
    (192, (2, 2, 18, 2), (6, 12, 24, 48)): "swinv2_large_window12_192",
}
DEFAULT_V2_NAME = "swinv2_tiny_window8_256"
# (field, value timm's SwinTransformer needs, why) for the fields timm cannot vary.
_TIMM_FIXED = (
    ("ape", False, "an absolute position embedding (ape=True), which timm's Swin has not"),
    ("patch_norm", True, "no LayerNorm after the patch embedding (patch_norm=False)"),
    ("merge_norm", True, "no LayerNorm in the patch merging (merge_norm=False)"),
    ("final_norm", True, "no LayerNorm before the head (final_norm=False)"),
    ("stem", "patch", "a convolutional stem (stem='conv'); timm's is one patch convolution"),
)


def timm_refusal(model: Any) -> str | None:
    """Why timm's ``SwinTransformer`` cannot build ``model`` (None: it can)."""
    reasons = [why for field, need, why in _TIMM_FIXED if getattr(model, field) != need]
    return "; ".join(reasons) or None


def timm_architecture(model: Any) -> tuple[str, dict[str, Any]]:
    """(timm model name, ``model_args``: every architecture number of ``model`` as timm's
    ``SwinTransformer`` or, for version 2, ``SwinTransformerV2`` takes them)."""
    depths, heads = tuple(model.depths), tuple(model.num_heads)
    key = (model.embed_dim, depths, heads)
    if model.version == 2:
        pretrained = tuple(model.pretrained_window_sizes) or (0,) * len(depths)
        name = TIMM_V2_NAMES.get(key, DEFAULT_V2_NAME)
        extra = {"pretrained_window_sizes": [int(p) for p in pretrained]}
    else:
        name, extra = TIMM_NAMES.get(key, DEFAULT_NAME), {}
    return name, extra | {
        "img_size": _pair_or_int(model.img_size),
        "patch_size": _pair_or_int(model.patch_size),
        "window_size": _pair_or_int(model.window_size),
        "embed_dim": int(model.embed_dim),
        "depths": list(depths),
        "num_heads": list(heads),
        "mlp_ratio": float(model.mlp_ratio),
        "qkv_bias": bool(model.qkv_bias),
        "in_chans": int(model.in_chans),
    }


def _pair_or_int(v: int | tuple[int, int]) -> int | list[int]:
    if isinstance(v, int):
        return v
    return int(v[0]) if v[0] == v[1] else [int(x) for x in v]


def timm_config(restored: Restored) -> dict[str, Any]:
    """The ``config.json`` of :func:`export_timm` (timm's hub layout)."""
    model, config = restored.model, restored.config
    name, model_args = timm_architecture(model)
    h, w = restored.image_size
    channels = int(model.in_chans)
    mean = list(restored.mean) if restored.mean else [0.0] * channels  # [0, 1] only: no shift
    std = list(restored.std) if restored.std else [1.0] * channels
    num_features = int(model.embed_dim * 2 ** (len(model.depths) - 1))
    pretrained_cfg = {
        "architecture": name,
        "input_size": [channels, h, w],
        "fixed_input_size": True,
        "interpolation": config.resize_method,
        "crop_pct": float(config.eval_crop_fraction),
        "crop_mode": "center",
        "mean": mean,
        "std": std,
        "num_classes": int(model.num_classes),
        "pool_size": None,
        "first_conv": "patch_embed.proj",
        "classifier": "head.fc",
    }
    return {
        "architecture": name,
        "num_classes": int(model.num_classes),
        "num_features": num_features,
        "global_pool": "avg",
        "label_names": list(restored.class_names),
        "model_args": model_args,
        "pretrained_cfg": pretrained_cfg,
        "swinjax": {"model": config.model, "step": restored.step, "ema": restored.ema},
    }


def check_timm(restored: Restored) -> None:
    """ConfigError naming why where timm's ``SwinTransformer`` cannot build ``restored``'s
    model."""
    why = timm_refusal(restored.model)
    if why:
        raise ConfigError(
            f"timm's SwinTransformer cannot build the model of this run ({restored.config.model}):"
            f" {why}; export it with --format stablehlo or savedmodel instead"
        )


def export_timm(restored: Restored, out: Path) -> list[Path]:
    """Writes ``out/model.safetensors`` and ``out/config.json``; returns their paths.
    ConfigError, before anything is written, for a model timm cannot build."""
    check_timm(restored)
    from safetensors.numpy import save_file

    state_dict = {
        k: np.ascontiguousarray(v, np.float32) for k, v in params_to_timm(restored.params).items()
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(state_dict, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / CONFIG_FILE).write_text(json.dumps(timm_config(restored), indent=2) + "\n")
    return [out / WEIGHTS_FILE, out / CONFIG_FILE]
