"""Steps: loss, metrics, decay mask, schedules, one compile per sweep, vmapped populations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from swinjax import steps
from swinjax.model import create_model
from tests.conftest import make_tiny_config


def _batch(n=32, seed=0):
    key = jax.random.key(seed)
    images = jax.random.randint(key, (n, 16, 16, 3), 0, 256).astype(jnp.uint8)
    labels = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, 10)
    return {"image": images, "label": labels}


def _state(**overrides):
    config = make_tiny_config(**overrides)
    return steps.create_train_state(config, create_model("tiny_test"), steps_per_epoch=10)


def test_train_steps_lower_the_loss_on_a_fixed_batch() -> None:
    state = _state(augment="none", learning_rate=3e-3, schedule="constant")
    batch = _batch()
    losses = []
    for _ in range(25):
        state, metrics = steps.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.8 * losses[0]
    assert int(state.step) == 25


def test_label_smoothing_loss_by_hand() -> None:
    logits = jnp.array([[2.0, 0.5, -1.0]])
    s = 0.1
    targets = np.array([0.0, 1.0, 0.0]) * (1 - s) + s / 3
    logp = np.asarray(jax.nn.log_softmax(logits))[0]
    expected = -(targets * logp).sum()
    np.testing.assert_allclose(
        steps.cross_entropy(logits, jnp.array([1]), s)[0], expected, rtol=1e-6
    )


def test_topk_matches_numpy() -> None:
    logits = jax.random.normal(jax.random.key(0), (64, 10))
    labels = jax.random.randint(jax.random.key(1), (64,), 0, 10)
    order = np.argsort(-np.asarray(logits), axis=1)
    for k in (1, 5):
        expected = (order[:, :k] == np.asarray(labels)[:, None]).any(1)
        np.testing.assert_array_equal(steps.topk_correct(logits, labels, k), expected)


def test_decay_mask_spares_biases_norms_and_position_tables() -> None:
    model = create_model("keras_example")
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    flat = traverse_util.flatten_dict(steps.decay_mask(params), sep="/")
    assert flat["layers_0/blocks_0/attn/qkv/kernel"] and flat["patch_embed/proj/kernel"]
    assert flat["layers_1/downsample/reduction/kernel"] and flat["head/fc/kernel"]
    for name in (
        "layers_0/blocks_0/attn/qkv/bias",
        "layers_0/blocks_0/norm1/scale",
        "absolute_pos_embed",
        "layers_0/blocks_0/attn/relative_position_bias_table",
    ):
        assert not flat[name], name
    assert all(jax.tree.leaves(steps.decay_mask(params, decay_all=True)))


def test_weight_decay_applies_only_where_masked() -> None:
    # The same step with and without weight decay: exactly the masked leaves differ.
    state = _state(augment="none", schedule="constant", weight_decay=0.5)
    mask = steps.decay_mask(state.params)
    no_decay = _state(augment="none", schedule="constant", weight_decay=0.0)
    batch = _batch()
    with_wd, _ = steps.train_step(state, batch)  # donates state
    without, _ = steps.train_step(no_decay, batch)
    for m, a, b in zip(
        jax.tree.leaves(mask),
        jax.tree.leaves(with_wd.params),
        jax.tree.leaves(without.params),
        strict=True,
    ):
        assert (not np.allclose(a, b, rtol=0, atol=1e-9)) == m


def test_warmup_cosine_schedule() -> None:
    hp = {
        "learning_rate": jnp.float32(1.0),
        "min_lr": jnp.float32(0.1),
        "warmup_steps": jnp.float32(4),
        "total_steps": jnp.float32(14),
    }
    lr = [float(steps.learning_rate_at(jnp.int32(s), hp, "warmup_cosine")) for s in range(15)]
    np.testing.assert_allclose(lr[:4], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(lr[4], 1.0)
    np.testing.assert_allclose(lr[9], 0.1 + 0.9 * 0.5, atol=1e-6)  # half-way through the cosine
    np.testing.assert_allclose(lr[14], 0.1, atol=1e-6)
    assert float(steps.learning_rate_at(jnp.int32(7), hp, "constant")) == 1.0


def test_sweep_values_do_not_recompile_train_step() -> None:
    batch = _batch()
    before = steps.train_step._cache_size()
    for lr, wd, ls, seed in [(1e-3, 1e-4, 0.1, 0), (3e-3, 0.05, 0.0, 1), (1e-2, 0.0, 0.2, 2)]:
        state = _state(learning_rate=lr, weight_decay=wd, label_smoothing=ls, seed=seed)
        state, metrics = steps.train_step(state, batch)
        np.testing.assert_allclose(float(metrics["learning_rate"]), lr * 1 / 10, rtol=1e-6)
    assert steps.train_step._cache_size() - before == 1


def test_vmapped_population_matches_separate_runs() -> None:
    batch = _batch()
    a = _state(learning_rate=1e-3, seed=0)
    b = _state(learning_rate=5e-3, seed=1)
    population = jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)
    pop_step = jax.jit(jax.vmap(steps._train_step, in_axes=(0, None)))
    for _ in range(2):
        population, pop_metrics = pop_step(population, batch)
        a, ma = steps.train_step(a, batch)
        b, mb = steps.train_step(b, batch)
    for i, single in enumerate((a, b)):
        for x, y in zip(
            jax.tree.leaves(single.params), jax.tree.leaves(population.params), strict=True
        ):
            np.testing.assert_allclose(x, y[i], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(pop_metrics["loss"], [ma["loss"], mb["loss"]], rtol=1e-5)


def test_eval_step_sums_only_real_rows() -> None:
    state = _state()
    batch = _batch(8)
    full = steps.eval_step(state, batch)
    masked = steps.eval_step(
        state, {**batch, "mask": jnp.array([1, 1, 1, 0, 0, 0, 0, 0], jnp.float32)}
    )
    first3 = steps.eval_step(state, {k: v[:3] for k, v in batch.items()})
    assert float(full["count"]) == 8 and float(masked["count"]) == 3
    for k in ("loss", "top1", "top5"):
        np.testing.assert_allclose(masked[k], first3[k], rtol=1e-5)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("learning_rate", -1.0, "config.learning_rate=-1.0: must be > 0"),
        ("label_smoothing", 1.0, "config.label_smoothing=1.0: must be in"),
        ("schedule", "step", "config.schedule='step': must be one of"),
        ("warmup_epochs", 99.0, "config.warmup_epochs=99.0"),
    ],
)
def test_bad_optimizer_config(key, value, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        steps.validate_optim_config(make_tiny_config(**{key: value}))


def test_check_finite() -> None:
    steps.check_finite({"loss": np.float32(1.0)}, 3)
    with pytest.raises(FloatingPointError, match="non-finite metrics at step 7"):
        steps.check_finite({"loss": np.float32(np.nan), "top1": 0.5}, 7)


def test_optax_adamw_is_what_runs() -> None:
    # One step of our train_step equals optax.adamw applied by hand to the same gradients.
    state = _state(
        augment="none",
        schedule="constant",
        learning_rate=1e-2,
        weight_decay=0.1,
        decay_all=True,
        label_smoothing=0.0,
    )
    batch = _batch()

    def loss_fn(p):
        x = batch["image"].astype(jnp.float32) / 255.0
        logits = state.model.apply(
            {"params": p},
            x,
            train=True,
            rngs={"dropout": jax.random.split(jax.random.fold_in(state.rng, 0))[1]},
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    grads = jax.grad(loss_fn)(state.params)
    tx = optax.adamw(1e-2, weight_decay=0.1, eps=1e-8)
    updates, _ = tx.update(grads, tx.init(state.params), state.params)
    expected = optax.apply_updates(state.params, updates)
    new_state, _ = steps.train_step(state, batch)
    # Adam's first step is ~lr * sign(g): float rounding in g moves near-zero entries by <1e-5.
    for x, y in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=2e-5)
