"""Mixed precision: ``dtype=bfloat16`` computes in bf16, keeps float32 parameters and optimizer
state, and trains like float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import data
from swinjax.config import build_model
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
