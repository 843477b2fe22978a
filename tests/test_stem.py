"""The convolutional stem: its layout reaches the patch size, its parameters live under
``patch_embed/`` with names timm's Swin has not, it is off in every preset, bad settings fail
naming the field."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from swinjax.config import validate_config
from swinjax.models import PRESETS, create_model, stem
from swinjax.optim import param_groups
from tests.conftest import make_tiny_config


def _params(model, size=16):
    x = jnp.zeros((1, size, size, 3))
    return jax.eval_shape(model.init, jax.random.key(0), x)["params"]


def test_layouts_reach_the_patch_size() -> None:
    assert stem.conv_layout((4, 4), 96, ()) == ((24, (2, 2)), (48, (2, 2)), (96, (1, 1)))
    assert stem.conv_layout((2, 2), 48, ()) == ((24, (2, 2)), (48, (1, 1)))
    assert stem.conv_layout((4, 2), 32, (16, 16, 32)) == ((16, (2, 2)), (16, (2, 1)), (32, (1, 1)))
    assert stem.conv_layout((1, 1), 16, ()) == ((16, (1, 1)),)
    # Explicit strides: a full-resolution convolution first.
    assert stem.conv_layout((2, 2), 48, (32, 48, 48), (1, 2, 1)) == (
        (32, (1, 1)),
        (48, (2, 2)),
        (48, (1, 1)),
    )


def test_conv_stem_params_and_output() -> None:
    model = create_model("tiny_test", stem="conv", stem_channels=(8, 12, 16))
    params = _params(model)
    names = set(traverse_util.flatten_dict(params["patch_embed"], sep="/"))
    assert names == {
        "conv_0/kernel", "conv_1/kernel", "conv_2/kernel",
        "conv_norm_0/scale", "conv_norm_0/bias", "conv_norm_1/scale", "conv_norm_1/bias",
        "conv_norm_2/scale", "conv_norm_2/bias",
        "conv_proj/kernel", "conv_proj/bias", "norm/scale", "norm/bias",
    }  # fmt: skip
    assert params["patch_embed"]["conv_0"]["kernel"].shape == (3, 3, 3, 8)
    assert params["patch_embed"]["conv_proj"]["kernel"].shape == (1, 1, 16, 16)
    timm_like = set(traverse_util.flatten_dict(_params(create_model("tiny_test")), sep="/"))
    ours = {f"patch_embed/{n}" for n in names}
    assert ours & timm_like == {"patch_embed/norm/scale", "patch_embed/norm/bias"}  # same role
    variables = model.init(jax.random.key(0), jnp.zeros((2, 16, 16, 3)))
    x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    logits = model.apply(variables, x)
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))
    # The stem is the first layer for layer-wise learning-rate decay, as timm's patch embed.
    ids, _ = param_groups.layer_ids(variables["params"])
    assert {v for k, v in ids.items() if k[0] == "patch_embed"} == {0}


def test_presets_keep_timms_patch_embedding() -> None:
    assert all(create_model(name).stem == "patch" for name in PRESETS)
    names = traverse_util.flatten_dict(_params(create_model("tiny_test")), sep="/")
    assert "patch_embed/proj/kernel" in names and not any("conv_" in n for n in names)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(stem="convs"), r"stem 'convs' is not one of \('patch', 'conv'\)"),
        (dict(stem_channels=(8,)), r"stem_channels \(8,\) / stem_strides \(\) are set but"),
        (dict(stem="conv", patch_size=3, img_size=18, window_size=3),
         r"patch_size \(3, 3\) must be powers of two"),
        (dict(stem="conv", patch_size=4, stem_channels=(8, 8), stem_strides=(2, 1)),
         r"stem_strides \(2, 1\): give one stride"),
        (dict(stem="conv", patch_size=4, stem_channels=(8, 8, 8), stem_strides=(2, 2)),
         r"stem_strides \(2, 2\): give one stride"),
        (dict(stem="conv", patch_size=4, stem_channels=(8,)),
         r"patch_size \(4, 4\) needs at least 2 convolutions"),
    ],
)  # fmt: skip
def test_bad_stem_fails_naming_the_field(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("tiny_test", **fields)


def test_config_validation_reaches_the_stem() -> None:
    config = make_tiny_config()
    config.model_kwargs.stem = "conv"
    validate_config(config)
    config.model_kwargs.stem = "cnn"
    with pytest.raises(ValueError, match="stem 'cnn' is not one of"):
        validate_config(config)
