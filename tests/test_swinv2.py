"""Swin V2 (``SwinTransformer(version=2)``): the log-spaced coordinates by hand, the parameter
tree and initialisation timm's, cosine attention's invariances and clamp, validation, features,
remat, weight decay, presets, and a tiny V2 config training and evaluating. Parity of the logits
with timm is ``tests/test_v2_parity.py``'s (fixtures written by ``tools/make_golden_v2.py``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from swinjax.errors import ConfigError
from swinjax.models import PRESETS, create_model, param_shapes
from swinjax.models.layers import windows
from swinjax.models.layers.attention import unit_vectors
from swinjax.models.layers.blocks_v2 import LOGIT_SCALE_MAX, WindowAttentionV2
from swinjax.optim import adamw
from swinjax.training import trainer
from tests.conftest import make_tiny_config

TINY_V2 = dict(version=2, depths=(2, 2), num_heads=(2, 4))  # over tiny_test: 16 px, window 4


def _flat(tree) -> dict[str, jax.Array]:
    return traverse_util.flatten_dict(tree, sep="/")


def _perturbed(params, key, scale: float = 0.3):
    """Every leaf plus noise: V2's zero post-norms would make every block the identity."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        x + scale * jax.random.normal(k, x.shape, x.dtype)
        for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, noisy)


# ------------------------------------------------------------------ coordinates (by hand)


def test_coords_table_3x3_window_pretrained_2_by_hand() -> None:
    # Offsets -2..2 over (pretrained window 2) - 1 = 1, times 8: -16, -8, 0, 8, 16; then
    # sign(x) log2(|x| + 1) / log2(8) = log2(|x| + 1) / 3.
    f = [-math.log2(17) / 3, -math.log2(9) / 3, 0.0, math.log2(9) / 3, math.log2(17) / 3]
    expected = np.array([[dy, dx] for dy in f for dx in f], np.float32)  # row (dy+2) * 5 + dx+2
    table = windows.relative_coords_table((3, 3), (2, 2))
    assert table.shape == (25, 2) and table.dtype == np.float32
    np.testing.assert_allclose(table, expected, rtol=1e-6)
    # Without a pretrained window the window's own (3 - 1 = 2) divides: -8, -4, 0, 4, 8.
    g = [-math.log2(9) / 3, -math.log2(5) / 3, 0.0, math.log2(5) / 3, math.log2(9) / 3]
    own = np.array([[dy, dx] for dy in g for dx in g], np.float32)
    np.testing.assert_allclose(windows.relative_coords_table((3, 3)), own, rtol=1e-6)
    # The row of offset (dy, dx) is the one relative_position_index gives that pair.
    index = windows.relative_position_index((3, 3))
    assert index[0, 8] == 0 and index[8, 0] == 24  # (0,0)->(2,2): offset (-2,-2); the reverse


def test_coords_table_rectangular_and_window_one() -> None:
    table = windows.relative_coords_table((1, 4))
    assert table.shape == (7, 2)
    np.testing.assert_array_equal(table[:, 0], 0.0)  # a window of height 1: offset 0 only
    # The largest offset, w - 1, scales to 8: log2(9) / log2(8) either way.
    np.testing.assert_allclose(table[[0, -1], 1], [-math.log2(9) / 3, math.log2(9) / 3], rtol=1e-6)


# ----------------------------------------------------------- parameters and initialisation


def test_parameter_tree_is_timms_through_the_rename() -> None:
    flat = _flat(param_shapes(create_model("tiny_test", **TINY_V2)))
    block = "layers_1/blocks_0/"
    expected = {
        "attn/qkv/kernel": (32, 96),
        "attn/q_bias": (32,),
        "attn/v_bias": (32,),
        "attn/logit_scale": (4, 1, 1),
        "attn/cpb_mlp_0/kernel": (2, 512),
        "attn/cpb_mlp_0/bias": (512,),
        "attn/cpb_mlp_2/kernel": (512, 4),
        "attn/proj/kernel": (32, 32),
        "attn/proj/bias": (32,),
        "norm1/scale": (32,),
        "norm2/bias": (32,),
        "mlp/fc1/kernel": (32, 64),
        "mlp/fc2/kernel": (64, 32),
    }
    for name, shape in expected.items():
        assert flat[block + name].shape == shape, name
    assert block + "attn/qkv/bias" not in flat and block + "attn/k_bias" not in flat
    assert block + "attn/cpb_mlp_2/bias" not in flat
    assert not [k for k in flat if "relative_position" in k]
    # V2 merges then normalises: the norm is over the stage's width, not 4x the previous one.
    assert flat["layers_1/downsample/reduction/kernel"].shape == (64, 32)
    assert flat["layers_1/downsample/norm/scale"].shape == (32,)
    no_bias = create_model("tiny_test", qkv_bias=False, **TINY_V2)
    assert not [k for k in _flat(param_shapes(no_bias)) if k.endswith(("q_bias", "v_bias"))]


def test_initialisation_is_timms() -> None:
    model = create_model("tiny_test", **TINY_V2)
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    flat = _flat(jax.jit(model.init)(jax.random.key(1), x)["params"])
    for name, value in flat.items():
        if "/blocks_" in name and "/norm" in name:  # _init_respostnorm: scale and bias 0
            np.testing.assert_array_equal(value, 0.0, err_msg=name)
        elif name.endswith("logit_scale"):
            np.testing.assert_allclose(value, math.log(10.0), rtol=1e-7)
        elif name.endswith(("q_bias", "v_bias", "/bias")) and "/blocks_" in name:
            np.testing.assert_array_equal(value, 0.0, err_msg=name)
        elif name.endswith("cpb_mlp_0/kernel"):  # a linear layer: truncated normal, std 0.02
            assert 0.015 < float(np.std(value)) < 0.025
    np.testing.assert_array_equal(flat["layers_1/downsample/norm/scale"], 1.0)
    # Every block starts as the identity: the stages' maps are those of a model without blocks.
    params = traverse_util.unflatten_dict(flat, sep="/")
    _, maps = model.apply({"params": params}, x, method=model.forward_intermediates)
    bare = create_model("tiny_test", **dict(TINY_V2, depths=(0, 0)))
    bare_params = {k: v for k, v in flat.items() if "/blocks_" not in k}
    _, bare_maps = bare.apply(
        {"params": traverse_util.unflatten_dict(bare_params, sep="/")},
        x,
        method=bare.forward_intermediates,
    )
    for got, want in zip(maps, bare_maps, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


# ------------------------------------------------------------------- the attention's math


def _attention(x_BwNC, **overrides):
    attn = WindowAttentionV2(num_heads=2, window=(2, 2), qkv_bias=False, **overrides)
    variables = attn.init(jax.random.key(0), x_BwNC, None, True)
    return attn, variables


def test_cosine_attention_is_invariant_to_the_input_scale() -> None:
    """Without q/v biases, logits are cosines: scaling the tokens scales only v, so the output
    (less the projection's bias) scales alike; a dot-product attention's would not."""
    x = jax.random.normal(jax.random.key(1), (3, 4, 8))
    attn, variables = _attention(x)
    params = _perturbed(variables["params"], jax.random.key(2))
    bias = params["proj"]["bias"]
    out = attn.apply({"params": params}, x, None, True) - bias
    out5 = attn.apply({"params": params}, 5.0 * x, None, True) - bias
    np.testing.assert_allclose(out5, 5.0 * out, rtol=1e-4, atol=1e-5)


def test_logit_scale_is_clamped_at_log_100() -> None:
    x = jax.random.normal(jax.random.key(1), (3, 4, 8))
    attn, variables = _attention(x)
    params = _perturbed(variables["params"], jax.random.key(2))

    def out(value):
        p = dict(params, logit_scale=jnp.full((2, 1, 1), value))
        return np.asarray(attn.apply({"params": p}, x, None, True))

    np.testing.assert_array_equal(out(9.0), out(LOGIT_SCALE_MAX))
    assert not np.allclose(out(1.0), out(LOGIT_SCALE_MAX))


def test_unit_vectors_match_normalize_and_keep_zero_finite() -> None:
    x = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(unit_vectors(x), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    grad = jax.grad(lambda v: unit_vectors(v).sum())(x)
    assert np.all(np.isfinite(grad))


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(version=3), r"version 3 is not one of \(1, 2\)"),
        (dict(pretrained_window_sizes=(4, 4)), r"is Swin V2's .* set version=2"),
        (dict(version=2, pretrained_window_sizes=(4,)), r"one size >= 0 per stage \(2 stages"),
        (dict(version=2, pretrained_window_sizes=(4, -1)), r"one size >= 0 per stage"),
        (dict(version=2, weight_init="keras"), r"use weight_init='timm' with version=2"),
    ],
)
def test_bad_v2_settings_raise_named_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model("tiny_test", **overrides)


def test_v2_keeps_the_shared_options() -> None:
    """ape, a conv stem, no merging norm, element-wise drop path: V2 blocks with V1's rest."""
    model = create_model(
        "tiny_test",
        ape=True,
        stem="conv",
        merge_norm=False,
        drop_path_mode="element",
        pretrained_window_sizes=(3, 0),
        **TINY_V2,
    )
    flat = _flat(param_shapes(model))
    assert "absolute_pos_embed" in flat and "patch_embed/conv_proj/kernel" in flat
    assert "layers_1/downsample/norm/scale" not in flat
    assert [s.pretrained_window for s in model.stage_specs()] == [(3, 3), (0, 0)]


def test_v2_presets() -> None:
    names = [n for n in PRESETS if n.startswith("swinv2_")]
    assert len(names) == 13
    for name in names:
        model = create_model(name)
        assert model.version == 2 and model.stage_specs()
    base = create_model("swinv2_base_window12to16_192to256")
    assert (base.img_size, base.window_size, base.pretrained_window_sizes) == (
        256,
        16,
        (12, 12, 12, 6),
    )
    # The last stage's window is clamped to its 8x8 map; its pretrained size stays timm's 6.
    last = base.stage_specs()[-1]
    assert (last.window, last.pretrained_window) == ((8, 8), (6, 6))
    assert create_model("swinv2_large_window12_192").num_classes == 21841


# -------------------------------------------------------- features, remat, weight decay, train


def test_forward_intermediates_and_features() -> None:
    model = create_model("tiny_test", **TINY_V2)
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    params = _perturbed(jax.jit(model.init)(jax.random.key(1), x)["params"], jax.random.key(3))
    variables = {"params": params}
    features, maps = model.apply(variables, x, method=model.forward_intermediates, norm=True)
    assert [m.shape for m in maps] == [(2, 8, 8, 16), (2, 4, 4, 32)]
    np.testing.assert_allclose(maps[-1], features, atol=1e-6)
    np.testing.assert_allclose(
        model.apply(variables, x, method=model.forward_features), features, atol=1e-6
    )
    logits = model.apply(variables, x)
    head = model.apply(variables, features, method=model.forward_head)
    np.testing.assert_allclose(head, logits, atol=1e-5)


@pytest.mark.parametrize("remat", ["blocks", "full"])
def test_remat_leaves_values_and_gradients_equal(remat: str) -> None:
    kwargs = dict(TINY_V2, depths=(2,), num_heads=(2,), drop_rate=0.1, attn_drop_rate=0.1)
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    plain = create_model("tiny_test", **kwargs)
    rematted = create_model("tiny_test", remat=remat, **kwargs)
    params = _perturbed(jax.jit(plain.init)(jax.random.key(1), x)["params"], jax.random.key(2))

    def loss(model):
        def f(p):
            out = model.apply({"params": p}, x, train=True, rngs={"dropout": jax.random.key(4)})
            return jnp.sum(out * jnp.cos(out))

        return jax.jit(jax.value_and_grad(f))(params)

    (v0, g0), (v1, g1) = loss(plain), loss(rematted)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    for name, a in _flat(g0).items():
        b = _flat(g1)[name]
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max() + 1e-12, name


def test_weight_decay_spares_the_position_bias_mlp_and_logit_scale() -> None:
    flat = _flat(adamw.decay_mask(param_shapes(create_model("tiny_test", **TINY_V2))))
    block = "layers_0/blocks_1/attn/"
    assert flat[block + "qkv/kernel"] and flat[block + "proj/kernel"]
    for name in ("cpb_mlp_0/kernel", "cpb_mlp_2/kernel", "logit_scale", "q_bias", "v_bias"):
        assert not flat[block + name], name


def test_a_tiny_v2_config_trains_and_evaluates(tmp_path) -> None:
    config = make_tiny_config(max_steps=2, num_epochs=1)
    config.model_kwargs.version = 2
    result = trainer.train_and_evaluate(config, tmp_path)
    assert result["step"] == 2 and result["stopped_by"] == "max_steps"
    test = result["test"]
    assert test["num_examples"] == 300 and np.isfinite(test["loss"])
