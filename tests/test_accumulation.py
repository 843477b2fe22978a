"""Gradient accumulation (``grad_accum_steps``): k microbatches of b are one batch of k * b."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from swinjax.augment import mixing
from swinjax.config import validate_config
from swinjax.errors import ConfigError
from swinjax.models import create_model
from swinjax.optim import adamw, param_groups, schedules
from swinjax.training import population, steps
from swinjax.training import state as state_lib
from swinjax.training.losses import cross_entropy, topk_correct
from tests.conftest import make_tiny_config


def _state(k: int, kernels: str = "cpu", **overrides):
    """tiny_test without dropout, drop path or augmentation: the step is deterministic."""
    config = make_tiny_config(augment="none", grad_accum_steps=k, **overrides)
    model = create_model("tiny_test", drop_path_rate=0.0, kernels=kernels)
    return state_lib.create_train_state(config, model, steps_per_epoch=4)


def _batch(n: int = 16, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    return {"image": jnp.asarray(images), "label": jnp.asarray(rng.integers(0, 10, n))}


_grads = jax.jit(steps._accumulated)


def _assert_close(a, b, rtol: float = 1e-6) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        # relative to each array's scale: a gradient element near 0 has no digits to compare
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max())


@pytest.mark.parametrize("kernels", ["cpu", pytest.param("reference", marks=pytest.mark.slow)])
def test_four_microbatches_equal_one_batch(kernels) -> None:
    batch, key = _batch(), jax.random.key(3)
    grads_1, metrics_1 = _grads(_state(1, kernels), key, batch)
    grads_4, metrics_4 = _grads(_state(4, kernels), key, batch)
    _assert_close(grads_4, grads_1)
    _assert_close(metrics_4, metrics_1)
    assert float(metrics_4["loss"]) > 0 and float(optax.tree.norm(grads_4)) > 0


@pytest.mark.slow
def test_the_step_updates_once_per_global_batch() -> None:
    batch = _batch()
    a, m_a = steps.train_step(_state(1), batch)
    b, m_b = steps.train_step(_state(4), batch)
    assert int(a.step) == int(b.step) == 1  # one update, at the batch's learning rate
    _assert_close(m_b["grad_norm"], m_a["grad_norm"])
    _assert_close(b.opt_state, a.opt_state, rtol=1e-5)


def test_microbatches_hold_strided_rows() -> None:
    batch = {"label": jnp.arange(8)}
    np.testing.assert_array_equal(
        steps.microbatches(batch, 4)["label"], [[0, 4], [1, 5], [2, 6], [3, 7]]
    )


def _step_before_accumulation(state, batch):
    """``steps._one_train_step`` as it was before ``grad_accum_steps`` (no recipe tools)."""
    step_key = jax.random.fold_in(state.rng, state.step)
    aug_key, dropout_key = jax.random.split(step_key)
    x, targets, labels = steps._train_inputs(state, aug_key, batch)

    def loss_fn(params):
        logits = state.model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
        if targets is None:
            loss = cross_entropy(logits, labels, state.hparams["label_smoothing"]).mean()
        else:
            loss = mixing.soft_cross_entropy(logits, targets).mean()
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = jax.tree.map(lambda g, t: g * t.astype(g.dtype), grads, state.trainable)
    grad_norm = optax.tree.norm(grads)
    grads = adamw.clip_by_global_norm(grads, grad_norm, state.hparams["grad_clip_norm"])
    lr = schedules.learning_rate_at(state.step, state.hparams, state.schedule)
    updates, opt_state = adamw.adamw_update(
        state.tx, state.opt_state, state.params, grads,
        step=state.step, learning_rate=lr, hparams=state.hparams,
    )  # fmt: skip
    updates = param_groups.scale_updates(updates, state.hparams["layer_decay"], state.trainable)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "top1": topk_correct(logits, labels, 1).mean(),
        "top5": topk_correct(logits, labels, 5).mean(),
        "learning_rate": lr,
        "grad_norm": grad_norm,
    }
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def test_one_microbatch_is_the_step_before_accumulation_bitwise() -> None:
    config = make_tiny_config()  # dropout, drop path and crop_flip on
    model = create_model("tiny_test", kernels="cpu")
    state = state_lib.create_train_state(config, model, steps_per_epoch=4)
    assert state.grad_accum_steps == 1
    old, new = state, jax.tree.map(jnp.copy, state)
    before = jax.jit(_step_before_accumulation)
    for seed in range(2):
        old, m_old = before(old, _batch(seed=seed))
        new, m_new = steps.train_step(new, _batch(seed=seed))
    assert int(old.step) == int(new.step) == 2
    compared = ((old.params, old.opt_state, m_old), (new.params, new.opt_state, m_new))
    for x, y in zip(*map(jax.tree.leaves, compared), strict=True):
        np.testing.assert_array_equal(x, y)


def test_population_with_accumulation_equals_its_members_alone() -> None:
    members = [_state(2, learning_rate=1e-3, seed=0), _state(2, learning_rate=3e-3, seed=1)]
    pop = population.stack([jax.tree.map(jnp.copy, m) for m in members])
    batch = _batch()
    pop, metrics = steps.train_step(pop, batch)
    assert metrics["loss"].shape == (2,)
    for i, member in enumerate(members):
        alone, m_alone = steps.train_step(member, batch)
        for x, y in zip(jax.tree.leaves(pop.params), jax.tree.leaves(alone.params), strict=True):
            np.testing.assert_allclose(x[i], y, rtol=0, atol=1e-6)  # updates are ~lr = 1e-3
        for name in ("loss", "grad_norm", "learning_rate"):
            _assert_close(metrics[name][i], m_alone[name], rtol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (dict(grad_accum_steps=0), "grad_accum_steps must be an int >= 1"),
        (dict(grad_accum_steps=True), "grad_accum_steps must be an int >= 1"),
        (dict(batch_size=64, grad_accum_steps=5), "multiple of 5"),
    ],
)
def test_bad_values_are_refused(overrides, words) -> None:
    with pytest.raises(ConfigError, match=words):
        validate_config(make_tiny_config(**overrides))


def test_microbatch_smaller_than_the_devices_is_refused_before_compiling() -> None:
    from swinjax.training import setup

    # 64 rows, 64 microbatches: one row each, fine on one device; 128 microbatches cannot be
    config = make_tiny_config(batch_size=64, grad_accum_steps=64)
    validate_config(config)
    with pytest.raises(ConfigError, match="grad_accum_steps"):
        setup.setup_run(make_tiny_config(batch_size=64, grad_accum_steps=128))


@pytest.mark.slow
def test_resume_with_accumulation_equals_uninterrupted(tmp_path) -> None:
    from swinjax.training import checkpoint, trainer
    from tests.test_train import _params_of

    def config(**overrides):
        tools = dict(grad_accum_steps=4, mixup_alpha=0.8, cutmix_alpha=1.0, erase_prob=0.25)
        return make_tiny_config(**tools, **overrides)

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    trainer.train_and_evaluate(config(), straight)
    first = trainer.train_and_evaluate(config(max_steps=21), resumed)  # mid epoch 2
    assert first["step"] == 21 and first["stopped_by"] == "max_steps"
    assert checkpoint.Checkpointer(resumed, read_only=True).all_steps()[-1] == 21
    trainer.train_and_evaluate(config(), resumed)
    a, meta_a = _params_of(straight)
    b, meta_b = _params_of(resumed)
    assert int(a.step) == int(b.step) == 32 and meta_a == meta_b
    assert a.grad_accum_steps == b.grad_accum_steps == 4
    compared = ((a.params, a.opt_state), (b.params, b.opt_state))
    for x, y in zip(*map(jax.tree.leaves, compared), strict=True):
        np.testing.assert_array_equal(x, y)  # bitwise on the CPU
