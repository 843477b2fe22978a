"""Mixed precision: ``dtype=bfloat16`` computes in bf16, keeps float32 parameters and optimizer
state, and trains like float32; the policy of ``swinjax.models.layers.precision`` read off the
train step's jaxpr; ``adam_mu_dtype``; float16 refused."""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import data
from swinjax.config import build_model, validate_config
from swinjax.errors import ConfigError
from swinjax.training import state as state_lib
from swinjax.training import steps
from tests.conftest import make_tiny_config

STEPS = 3
BATCH = 32


def _run(dtype: str) -> tuple[state_lib.TrainState, list[dict], str, jax.Array, dict]:
    """``STEPS`` train steps from the seed's initial state under ``dtype``: the final state, each
    step's metrics, the first step's StableHLO, logits after training, the initial params."""
    config = make_tiny_config(dtype=dtype)
    split = data.load_split(config, config.train_split)
    state = state_lib.create_train_state(config, build_model(config, split), steps_per_epoch=16)
    initial = jax.device_get(state.params)
    batches = list(data.train_batches(split, BATCH, config.seed, epoch=0))[:STEPS]
    hlo = steps.train_step.lower(state, batches[0]).as_text()
    history = []
    for batch in batches:
        state, metrics = steps.train_step(state, batch)
        history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    logits = steps.predict(state, jnp.asarray(split.images_EHWC[:64]))
    return state, history, hlo, logits, initial


@pytest.fixture(scope="module")
def runs() -> dict:
    return {dtype: _run(dtype) for dtype in ("float32", "bfloat16")}


def test_bfloat16_computes_in_bfloat16(runs) -> None:
    hlo32, hlo16 = runs["float32"][2], runs["bfloat16"][2]
    assert "bf16" not in hlo32
    # The matrix multiplies (dense layers, attention) take bf16 operands.
    dots16 = [line for line in hlo16.splitlines() if "dot_general" in line]
    assert dots16 and sum("bf16" in line for line in dots16) >= len(dots16) // 2


def test_bfloat16_keeps_float32_params_and_optimizer_state(runs) -> None:
    state16 = runs["bfloat16"][0]
    for name, tree in (("params", state16.params), ("opt_state", state16.opt_state)):
        leaves = jax.tree.leaves(tree)
        assert leaves, name
        floating = [x for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
        assert floating and all(x.dtype == jnp.float32 for x in floating), name
        assert all(x.dtype != jnp.bfloat16 for x in leaves), name


def test_bfloat16_trains_like_float32(runs) -> None:
    state32, hist32, _, logits32, init32 = runs["float32"]
    state16, hist16, _, logits16, init16 = runs["bfloat16"]
    for a, b in zip(jax.tree.leaves(init32), jax.tree.leaves(init16), strict=True):
        np.testing.assert_array_equal(a, b)  # the same float32 initial parameters
    for m32, m16 in zip(hist32, hist16, strict=True):
        assert all(np.isfinite(v) for v in m16.values()), m16
        assert abs(m16["loss"] - m32["loss"]) < 0.05 * m32["loss"], (m32, m16)
    assert logits16.dtype == jnp.float32 and np.all(np.isfinite(logits16))
    rel = np.linalg.norm(logits16 - logits32) / np.linalg.norm(logits32)
    assert rel < 0.05, rel
    for a, b in zip(jax.tree.leaves(state32.params), jax.tree.leaves(state16.params), strict=True):
        np.testing.assert_allclose(b, a, atol=2e-2)  # three steps of lr 2e-3 apart at most


# ------------------------------------------------------------- the policy, read off the jaxpr


def _tiny_state(version: int = 1, **overrides) -> tuple[state_lib.TrainState, dict]:
    config = make_tiny_config(**overrides)
    config.model_kwargs.version = version
    split = data.load_split(config, config.train_split)
    state = state_lib.create_train_state(config, build_model(config, split), steps_per_epoch=16)
    return state, next(iter(data.train_batches(split, 8, config.seed, epoch=0)))


def _eqns(jaxpr: jax.extend.core.Jaxpr) -> Iterator[jax.extend.core.JaxprEqn]:
    """Every equation of ``jaxpr`` and of the jaxprs nested in it (jit, custom_vjp, remat)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    yield from _eqns(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    yield from _eqns(sub)


def _in_dtypes(eqn: jax.extend.core.JaxprEqn) -> set[str]:
    return {str(v.aval.dtype) for v in eqn.invars if hasattr(v.aval, "dtype")}


@pytest.fixture(scope="module", params=[1, 2], ids=["v1", "v2"])
def bf16_jaxpr(request) -> tuple[jax.extend.core.ClosedJaxpr, object, int]:
    """The bfloat16 train step of tiny_test as Swin (V1) and as Swin V2."""
    state, batch = _tiny_state(version=request.param, dtype="bfloat16")
    closed, shapes = jax.make_jaxpr(steps.train_step, return_shape=True)(state, batch)
    return closed, shapes, request.param


def test_bfloat16_step_outputs_follow_the_policy(bf16_jaxpr) -> None:
    closed, shapes, _ = bf16_jaxpr
    outputs = jax.tree.unflatten(jax.tree.structure(shapes), closed.out_avals)
    new_state, metrics = outputs
    for name, tree in (("params", new_state.params), ("opt_state", new_state.opt_state)):
        floating = [a for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)]
        assert floating and {a.dtype for a in floating} == {jnp.dtype("float32")}, name
    assert metrics["loss"].dtype == jnp.float32


def test_bfloat16_step_keeps_the_float32_parts_float32(bf16_jaxpr) -> None:
    closed, _, version = bf16_jaxpr
    eqns = list(_eqns(closed.jaxpr))
    forward = [e for e in eqns if "transpose" not in str(e.source_info.name_stack)]
    by_name = {}
    for e in forward:
        by_name.setdefault(e.primitive.name, []).append(e)
    # Compute in bfloat16: the matrix products (dense, attention, patch embedding) take bf16.
    dots = by_name["dot_general"]
    assert sum(_in_dtypes(e) == {"bfloat16"} for e in dots) >= len(dots) // 2
    # Softmax (attention and the loss), GELU's erf, LayerNorm's rsqrt, every division and
    # reduction of the forward pass: float32. V2 adds the normalisation of queries and keys
    # (rsqrt), the logit scale's exp and the position bias's sigmoid (logistic).
    prims = ("exp", "reduce_max", "erf", "rsqrt", "div", "reduce_sum", "log")
    for prim in prims + (("logistic",) if version == 2 else ()):
        assert by_name.get(prim), prim
        bad = [e for e in by_name[prim] if "bfloat16" in _in_dtypes(e)]
        assert not bad, (prim, [str(e.source_info.name_stack) for e in bad])
    # LayerNorm's mean and variance in particular (norm1, norm2, the final norm).
    norm_sums = [e for e in by_name["reduce_sum"] if "norm" in str(e.source_info.name_stack)]
    assert norm_sums and all(_in_dtypes(e) == {"float32"} for e in norm_sums)
    # The loss: log-softmax of float32 logits.
    assert all(_in_dtypes(e) == {"float32"} for e in by_name["log"])


def test_adam_mu_dtype_bfloat16_keeps_nu_and_params_float32() -> None:
    state, batch = _tiny_state(adam_mu_dtype="bfloat16")
    stepped, _ = jax.eval_shape(steps.train_step, state, batch)  # traced, not compiled
    for tree in (state, stepped):  # as created, and after an update
        moments = {"mu": set(), "nu": set()}
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree.opt_state):
            names = {getattr(k, "name", None) for k in path}
            for moment in moments:
                if moment in names:
                    moments[moment].add(leaf.dtype)
        assert moments == {"mu": {jnp.dtype("bfloat16")}, "nu": {jnp.dtype("float32")}}
        assert {x.dtype for x in jax.tree.leaves(tree.params)} == {jnp.dtype("float32")}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dtype": "float16"}, "no dynamic loss scaling.*bfloat16.*float32"),
        ({"dtype": "float64"}, "use one of"),
        ({"adam_mu_dtype": "float16"}, "adam_mu_dtype"),
    ],
)
def test_unsupported_precisions_are_refused_by_validation(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(make_tiny_config(**overrides))
