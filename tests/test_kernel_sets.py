"""The two kernel sets compute the same model (swinjax.models.layers.kernel_sets): same parameters,
same dropout masks, same outputs and gradients, for Swin (V1) and Swin V2 blocks; ``auto`` resolves
to ``cpu`` here; rematerialised blocks change neither the parameters nor the loss nor the
gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from swinjax import config as config_lib
from swinjax.models import create_model
from swinjax.models.layers import dropout, kernel_sets
from swinjax.models.layers.blocks import SwinBlock
from swinjax.models.layers.blocks_v2 import SwinBlockV2

# (window, map size, channels, heads): the cpu set's elementwise attention (N = 4 and 16 with
# heads of 8 channels) and its matrix products (N = 49).
BLOCKS = [(2, 4, 16, 2), (4, 8, 16, 2), (7, 14, 16, 2)]


def _assert_same_grads(a: dict, b: dict, rel: float = 1e-4) -> None:
    fa, fb = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
    assert fa.keys() == fb.keys()
    for path, ga in fa.items():
        gb = np.asarray(fb[path])
        err = np.abs(np.asarray(ga) - gb).max()
        assert err <= rel * np.abs(gb).max() + 1e-12, (path, err, np.abs(gb).max())


def _value_and_grads(module, variables, x, key, **kwargs):
    def loss(params, x):
        out = module.apply({"params": params}, x, rngs={"dropout": key}, **kwargs)
        return jnp.sum(out * jnp.cos(out)), out

    grad = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    (_, out), (g_params, g_x) = jax.jit(grad)(variables["params"], x)
    return np.asarray(out), g_params, np.asarray(g_x)


def _init(model, x):
    return jax.jit(model.init)(jax.random.key(1), x)["params"]


def _perturbed(params, key):
    """Every leaf plus N(0, 0.3) noise: Swin V2 initialises its post-norms at zero, which would
    leave every block the identity and its attention's gradients zero."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        x + 0.3 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, noisy)


def test_auto_resolves_to_cpu_on_this_cpu() -> None:
    assert jax.default_backend() == "cpu"
    assert kernel_sets.resolve("auto") == "cpu" and kernel_sets.get("auto") is kernel_sets.CPU
    assert kernel_sets.resolve("auto", "gpu") == kernel_sets.resolve("auto", "tpu") == "reference"
    assert (
        kernel_sets.get("reference") is kernel_sets.REFERENCE
        and kernel_sets.get("cpu") is kernel_sets.CPU
    )
    with pytest.raises(ValueError, match=r"kernels 'fast' is not one of"):
        create_model("tiny_test", kernels="fast")
    with pytest.raises(ValueError, match=r"remat 'all' is not one of"):
        create_model("tiny_test", remat="all")


def test_cpu_attention_choice_by_shape() -> None:
    from swinjax.models.layers import attention

    cpu = kernel_sets.CPU
    assert cpu.attention(4, 8) is cpu.attention(16, 8) is attention.small_window_attention
    assert cpu.attention(9, 32) is attention.small_window_attention
    assert cpu.attention(16, 32) is cpu.attention(49, 8) is attention.matmul_attention
    assert kernel_sets.REFERENCE.attention(4, 8) is attention.dot_product_attention


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5, 4), (64, 9, 33), (4, 1, 1)])
@pytest.mark.parametrize("p", [0.03, 0.5, 0.97])
def test_reference_dropout_draws_the_same_masks(shape, p) -> None:
    for key in (jax.random.key(0), jax.random.key(77), jax.random.key(3, impl="rbg")):
        np.testing.assert_array_equal(
            np.asarray(dropout.bernoulli(key, p, shape, fused=False)),
            np.asarray(dropout.bernoulli(key, p, shape)),
        )
    key = jax.random.key(5)
    x = jax.random.normal(key, shape)
    np.testing.assert_array_equal(
        np.asarray(dropout.drop(x, key, 1 - p, fused=False)),
        np.asarray(dropout.drop(x, key, 1 - p)),
    )
    np.testing.assert_array_equal(
        np.asarray(dropout.dropout_scale(key, p, shape, fused=False)),
        np.asarray(dropout.dropout_scale(key, p, shape)),
    )


def test_the_sets_trace_different_programs() -> None:
    """The parity tests compare two formulations, not one traced twice."""
    x = jnp.ones((2, 4, 4, 16))
    jaxprs = {}
    for name in ("cpu", "reference"):
        block = SwinBlock(
            num_heads=2, window=(2, 2), shift=(1, 1), drop=0.1, attn_drop=0.1, kernels=name
        )
        params = block.init(jax.random.key(0), x, True)

        def loss(p, x, block=block):
            return block.apply(p, x, False, rngs={"dropout": jax.random.key(1)}).sum()

        jaxprs[name] = str(jax.make_jaxpr(jax.grad(loss))(params, x))
    assert "custom_vjp_call" in jaxprs["cpu"] and "threefry2x32" not in jaxprs["cpu"]
    assert "custom_vjp_call" not in jaxprs["reference"] and "threefry2x32" in jaxprs["reference"]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("window, size, dim, heads", BLOCKS)
@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("with_dropout", [False, True])
def test_block_same_outputs_and_gradients(
    version, window, size, dim, heads, shifted, with_dropout
) -> None:
    rate = 0.1 if with_dropout else 0.0
    shift = (window // 2,) * 2 if shifted else (0, 0)
    x = jax.random.normal(jax.random.key(0), (2, size, size, dim))
    block = SwinBlock if version == 1 else SwinBlockV2
    blocks = {
        name: block(
            num_heads=heads,
            window=(window, window),
            shift=shift,
            mlp_ratio=2.0,
            drop=rate,
            attn_drop=rate,
            drop_path=rate,
            kernels=name,
        )
        for name in ("cpu", "reference")
    }
    variables = blocks["cpu"].init(jax.random.key(1), x, True)
    ref_vars = blocks["reference"].init(jax.random.key(1), x, True)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), variables, ref_vars))
    if version == 2:
        variables = {"params": _perturbed(variables["params"], jax.random.key(3))}
    key = jax.random.key(2)
    cpu = _value_and_grads(blocks["cpu"], variables, x, key, deterministic=not with_dropout)
    ref = _value_and_grads(blocks["reference"], variables, x, key, deterministic=not with_dropout)
    np.testing.assert_allclose(cpu[0], ref[0], atol=1e-5, rtol=0)
    if with_dropout:  # dropout was on (and dropped the same elements in both)
        assert not np.allclose(cpu[0], blocks["cpu"].apply(variables, x, True))
    _assert_same_grads(cpu[1], ref[1])
    _assert_same_grads({"x": cpu[2]}, {"x": ref[2]})


@pytest.mark.parametrize("version", [1, 2])
def test_model_same_parameters_logits_and_gradients(version: int) -> None:
    """tiny_test, one block a stage (patch merging between), every dropout on (embedding,
    attention, projection, MLP, drop-path)."""
    x = jax.random.uniform(jax.random.key(0), (3, 16, 16, 3))
    kwargs = dict(
        depths=(1, 1), drop_rate=0.1, attn_drop_rate=0.1, drop_path_rate=0.2, version=version
    )
    models = {
        name: create_model("tiny_test", kernels=name, **kwargs) for name in ("cpu", "reference")
    }
    params = {name: _init(m, x) for name, m in models.items()}
    flat = {name: traverse_util.flatten_dict(p) for name, p in params.items()}
    assert flat["cpu"].keys() == flat["reference"].keys()
    for path, value in flat["cpu"].items():
        np.testing.assert_array_equal(value, flat["reference"][path])
    variables = {"params": params["cpu"]}
    if version == 2:
        variables = {"params": _perturbed(params["cpu"], jax.random.key(3))}
    key = jax.random.key(2)
    cpu = _value_and_grads(models["cpu"], variables, x, key, train=True)
    ref = _value_and_grads(models["reference"], variables, x, key, train=True)
    np.testing.assert_allclose(cpu[0], ref[0], atol=1e-5, rtol=0)
    _assert_same_grads(cpu[1], ref[1])


@pytest.mark.slow
@pytest.mark.parametrize("remat", ["blocks", "full"])
@pytest.mark.parametrize("kernel_set", ["cpu", "reference"])
def test_remat_same_params_loss_and_gradients(remat: str, kernel_set: str) -> None:
    """One stage of a regular and a shifted block, every dropout on."""
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    kwargs = dict(depths=(2,), num_heads=(2,), drop_rate=0.1, attn_drop_rate=0.1)
    plain = create_model("tiny_test", kernels=kernel_set, **kwargs)
    rematted = create_model("tiny_test", kernels=kernel_set, remat=remat, **kwargs)
    params, other = _init(plain, x), _init(rematted, x)
    assert jax.tree.structure(other) == jax.tree.structure(params)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), other, params))
    key = jax.random.key(2)
    ref = _value_and_grads(plain, {"params": params}, x, key, train=True)
    got = _value_and_grads(rematted, {"params": params}, x, key, train=True)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-6, rtol=0)
    _assert_same_grads(got[1], ref[1], rel=1e-5)


def test_config_keys_reach_the_model() -> None:
    config = config_lib.base_config()
    assert (config.kernels, config.remat) == ("auto", "none")
    assert "kernels" not in config.model_kwargs and "remat" not in config.model_kwargs
    config.update(model="tiny_test", kernels="reference", remat="blocks")
    config_lib.validate_config(config)
    overrides = config_lib.model_overrides(config)
    assert (overrides["kernels"], overrides["remat"]) == ("reference", "blocks")
    config.remat = "everything"
    with pytest.raises(ValueError, match=r"remat 'everything' is not one of"):
        config_lib.validate_config(config)
    saved_before = {k: v for k, v in config.to_dict().items() if k not in ("kernels", "remat")}
    upgraded = config_lib.upgrade_saved_config(saved_before)
    assert config_lib.model_overrides(ml_collections.ConfigDict(upgraded)) == {
        "kernels": "auto",
        "remat": "none",
    }
