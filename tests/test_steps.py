"""Steps: loss, metrics, decay mask, schedules, one compile per sweep, vmapped populations.

Every train_step here uses one static recipe (tiny_test, augment "none", warmup_cosine, default
decay mask, a [16, 16, 16, 3] uint8 batch), so the module compiles ``train_step`` once.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from swinjax.config import base_config
from swinjax.models import create_model
from swinjax.optim import adamw, schedules
from swinjax.training import losses, steps
from swinjax.training import state as state_lib
from tests.conftest import make_tiny_config

MODEL = create_model("tiny_test")
# For the tests' own helper functions: XLA's backend optimizations are most of a CPU compile.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
STEPS_PER_EPOCH = 10


def _batch(n=16, seed=0):
    key = jax.random.key(seed)
    images = jax.random.randint(key, (n, 16, 16, 3), 0, 256).astype(jnp.uint8)
    labels = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, 10)
    return {"image": images, "label": labels}


def _config(**overrides):
    base = dict(augment="none", schedule="warmup_cosine", warmup_epochs=0.0, num_epochs=2)
    return make_tiny_config(**{**base, **overrides})


def _state(steps_per_epoch=STEPS_PER_EPOCH, **overrides):
    return state_lib.create_train_state(
        _config(**overrides), MODEL, steps_per_epoch=steps_per_epoch
    )


def _dropout_key(state, step=0):
    return jax.random.split(jax.random.fold_in(state.rng, step))[1]


def _grads(state, batch, smoothing=0.1):
    """The gradient train_step takes at step 0 (same dropout key, same loss)."""
    return _jit_grads(state.params, _dropout_key(state), batch, jnp.float32(smoothing))


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def _jit_grads(params, dropout_key, batch, smoothing):
    def loss_fn(p):
        x = batch["image"].astype(jnp.float32) / 255.0
        logits = MODEL.apply({"params": p}, x, train=True, rngs={"dropout": dropout_key})
        return losses.cross_entropy(logits, batch["label"], smoothing).mean()

    return jax.grad(loss_fn)(params)


def test_train_steps_lower_the_loss_on_a_fixed_batch() -> None:
    state = _state(learning_rate=1e-2, num_epochs=5)
    batch = _batch()
    losses = []
    for _ in range(20):
        state, metrics = steps.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.8 * losses[0]
    assert int(state.step) == 20 and state.step.dtype == jnp.int32
    assert set(metrics) == {"loss", "top1", "top5", "learning_rate", "grad_norm"}
    assert all(v.shape == () and v.dtype == jnp.float32 for v in metrics.values())
    assert float(metrics["top5"]) >= float(metrics["top1"])


def test_label_smoothing_loss_by_hand() -> None:
    logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    labels = np.array([1, 2])
    for s in (0.0, 0.1, 0.3):
        targets = np.eye(3)[labels] * (1 - s) + s / 3
        logp = np.asarray(jax.nn.log_softmax(logits))
        expected = -(targets * logp).sum(-1)
        got = losses.cross_entropy(logits, jnp.asarray(labels), jnp.float32(s))
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_topk_matches_numpy() -> None:
    logits = np.asarray(jax.random.normal(jax.random.key(0), (64, 10)))
    labels = np.asarray(jax.random.randint(jax.random.key(1), (64,), 0, 10))
    order = np.argsort(-logits, axis=1)
    for k in (1, 3, 5):
        expected = (order[:, :k] == labels[:, None]).any(1)
        np.testing.assert_array_equal(losses.topk_correct(logits, labels, k), expected)
    # Fewer than 5 classes: top-5 is min(5, K) = all of them; a NaN logit row is never correct.
    three = jnp.array([[0.1, 0.2, 0.3], [np.nan, 0.0, 0.0]])
    np.testing.assert_array_equal(losses.topk_correct(three, jnp.array([0, 0]), 5), [1.0, 0.0])


def test_decay_mask_spares_biases_norms_and_position_tables() -> None:
    model = create_model("keras_example", patch_norm=True)  # ape and every kind of leaf
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    flat = traverse_util.flatten_dict(adamw.decay_mask(params), sep="/")
    assert flat["layers_0/blocks_0/attn/qkv/kernel"] and flat["patch_embed/proj/kernel"]
    assert flat["layers_1/downsample/reduction/kernel"] and flat["head/fc/kernel"]
    assert flat["layers_0/blocks_0/mlp/fc1/kernel"]
    for name in (
        "layers_0/blocks_0/attn/qkv/bias",
        "layers_0/blocks_0/norm1/scale",
        "layers_0/blocks_0/norm2/bias",
        "patch_embed/norm/scale",
        "absolute_pos_embed",
        "layers_0/blocks_0/attn/relative_position_bias_table",
    ):
        assert not flat[name], name
    assert all(jax.tree.leaves(adamw.decay_mask(params, decay_all=True)))


@pytest.mark.parametrize("decay_all", [False, True])
def test_zero_gradient_step_is_pure_decoupled_decay(decay_all) -> None:
    # Keras' AdamW: p -= lr * wd * p. With zero gradients Adam's part is 0 / (0 + eps) = 0.
    config = _config(decay_all=decay_all)
    tx = adamw.make_optimizer(config)
    assert tx is adamw.make_optimizer(_config(decay_all=decay_all, learning_rate=5.0))
    params = jax.eval_shape(MODEL.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    params = jax.tree.map(lambda s: jnp.full(s.shape, 2.0, s.dtype), params)
    opt_state = tx.init(params)
    hyper = {"learning_rate": 0.1, "weight_decay": 0.5, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
    opt_state = opt_state._replace(hyperparams=jax.tree.map(jnp.float32, hyper))
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(tx.update, compiler_options=FAST_COMPILE)(zeros, opt_state, params)
    new = optax.apply_updates(params, updates)
    mask = adamw.decay_mask(params, decay_all=decay_all)
    for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(new), strict=True):
        np.testing.assert_allclose(p, 2.0 * (1 - 0.1 * 0.5) if m else 2.0, rtol=1e-6)
    flat = traverse_util.flatten_dict(new, sep="/")
    np.testing.assert_allclose(flat["layers_0/blocks_0/norm1/scale"], 1.9 if decay_all else 2.0)


def test_weight_decay_applies_only_where_masked() -> None:
    # The same train_step with and without weight decay: exactly the masked leaves differ.
    state = _state(weight_decay=0.5)
    mask = adamw.decay_mask(state.params)
    no_decay = _state(weight_decay=0.0)
    batch = _batch()
    with_wd, _ = steps.train_step(state, batch)  # donates state
    without, _ = steps.train_step(no_decay, batch)
    leaves = zip(
        jax.tree.leaves(mask),
        jax.tree.leaves(with_wd.params),
        jax.tree.leaves(without.params),
        strict=True,
    )
    for m, a, b in leaves:
        assert (not np.array_equal(a, b)) == m


def test_warmup_cosine_schedule() -> None:
    hp = {
        "learning_rate": jnp.float32(1.0),
        "min_lr": jnp.float32(0.1),
        "warmup_steps": jnp.float32(4),
        "total_steps": jnp.float32(14),
    }
    lr = [float(schedules.learning_rate_at(jnp.int32(s), hp, "warmup_cosine")) for s in range(16)]
    np.testing.assert_allclose(lr[:4], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(lr[4], 1.0)
    np.testing.assert_allclose(lr[9], 0.1 + 0.9 * 0.5, atol=1e-6)  # half-way through the cosine
    np.testing.assert_allclose(lr[14:], 0.1, atol=1e-6)  # the end, and held after it
    assert float(schedules.learning_rate_at(jnp.int32(7), hp, "constant")) == 1.0
    no_warmup = {**hp, "warmup_steps": jnp.float32(0)}
    assert float(schedules.learning_rate_at(jnp.int32(0), no_warmup, "warmup_cosine")) == 1.0


def test_sweep_values_do_not_recompile_train_step() -> None:
    batch = _batch()
    sweep = [
        dict(learning_rate=1e-3, weight_decay=1e-4, label_smoothing=0.1, seed=0),
        dict(learning_rate=3e-3, weight_decay=0.05, label_smoothing=0.0, seed=1, b1=0.8,
             b2=0.99, adam_eps=1e-7, adam_eps_keras=True, grad_clip_norm=1.0),
        dict(learning_rate=1e-2, weight_decay=0.0, label_smoothing=0.2, seed=2, warmup_epochs=1.0,
             num_epochs=3, min_lr=1e-4, steps_per_epoch=7),
    ]  # fmt: skip
    sizes = []
    for overrides in sweep:
        state = _state(**overrides)
        assert all(v.shape == () and v.dtype == jnp.float32 for v in state.hparams.values())
        assert jax.dtypes.issubdtype(state.rng.dtype, jax.dtypes.prng_key)
        expected_lr = schedules.learning_rate_at(state.step, state.hparams, state.schedule)
        state, metrics = steps.train_step(state, batch)
        assert float(metrics["learning_rate"]) == float(expected_lr)
        np.testing.assert_allclose(
            float(state.hparams["label_smoothing"]), overrides["label_smoothing"]
        )
        sizes.append(steps.train_step._cache_size())
    assert sizes[0] == sizes[1] == sizes[2], f"train_step recompiled: cache sizes {sizes}"
    np.testing.assert_allclose(float(metrics["learning_rate"]), 1e-2 / 7)  # warmup step 0 of 7


def test_same_seed_same_run_bitwise() -> None:
    batch = _batch()
    a, b = _state(seed=5), _state(seed=5)
    c = state_lib.create_train_state(_config(seed=0), MODEL, jax.random.key(5), steps_per_epoch=10)
    for _ in range(2):
        a, _ = steps.train_step(a, batch)
        b, _ = steps.train_step(b, batch)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)
    init_a = jax.tree.leaves(_state(seed=5).params)
    for x, z in zip(init_a, jax.tree.leaves(c.params), strict=True):
        np.testing.assert_array_equal(x, z)  # explicit rng == config.seed of the same value


def test_vmapped_population_matches_separate_runs() -> None:
    batch = _batch()
    a = _state(learning_rate=1e-3, label_smoothing=0.1, seed=0)
    b = _state(learning_rate=5e-3, label_smoothing=0.0, seed=1)
    population = jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)
    for _ in range(2):
        population, pop_metrics = steps.train_step(population, batch)  # the same jitted step
        a, ma = steps.train_step(a, batch)
        b, mb = steps.train_step(b, batch)
    for i, single in enumerate((a, b)):
        for x, y in zip(
            jax.tree.leaves(single.params), jax.tree.leaves(population.params), strict=True
        ):
            # Adam's step is ~lr * sign(g): float32 reassociation under vmap (different sum
            # orders) moves entries whose g is near zero by up to ~1e-4, while a member stepped
            # with the other's seed or learning rate is off by ~lr = 1e-3.
            np.testing.assert_allclose(x, y[i], rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(pop_metrics["loss"], [ma["loss"], mb["loss"]], rtol=1e-5)
    np.testing.assert_allclose(
        pop_metrics["learning_rate"], [ma["learning_rate"], mb["learning_rate"]]
    )
    np.testing.assert_array_equal(population.step, [2, 2])


def test_eval_step_sums_only_real_rows() -> None:
    state = _state()
    batch = _batch(8)
    batch["image"] = batch["image"].astype(jnp.float32) / 255.0
    full = steps.eval_step(state, batch)
    padded = dict(batch)
    padded["image"] = batch["image"].at[3:].set(jnp.nan)  # garbage padding must not leak
    padded["mask"] = jnp.array([1, 1, 1, 0, 0, 0, 0, 0], jnp.float32)
    masked = steps.eval_step(state, padded)
    assert float(full["count"]) == 8 and float(masked["count"]) == 3
    logits, labels = steps.predict(state, batch["image"]), batch["label"]
    loss = losses.cross_entropy(logits, labels, 0.1)
    top1, top5 = losses.topk_correct(logits, labels, 1), losses.topk_correct(logits, labels, 5)
    for k, per_example in (("loss", loss), ("top1", top1), ("top5", top5)):
        np.testing.assert_allclose(full[k], per_example.sum(), rtol=1e-5)
        np.testing.assert_allclose(masked[k], per_example[:3].sum(), rtol=1e-5)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("learning_rate", -1.0, "config.learning_rate=-1.0: must be > 0"),
        ("learning_rate", float("nan"), "config.learning_rate=nan: must be a finite number"),
        ("weight_decay", -0.1, "config.weight_decay=-0.1: must be >= 0"),
        ("label_smoothing", 1.0, "config.label_smoothing=1.0: must be in [0, 1)"),
        ("schedule", "step", "config.schedule='step': must be one of"),
        ("warmup_epochs", 99.0, "config.warmup_epochs=99.0: must be in [0, num_epochs=2]"),
        ("min_lr", 1.0, "config.min_lr=1.0: must be in [0, learning_rate="),
        ("grad_clip_norm", -1.0, "config.grad_clip_norm=-1.0: must be >= 0"),
        ("b2", 1.0, "config.b2=1.0: must be in [0, 1)"),
        ("adam_eps", 0.0, "config.adam_eps=0.0: must be > 0"),
        ("num_epochs", 0, "config.num_epochs=0: must be >= 1"),
    ],
)
def test_bad_optimizer_config(key, value, message) -> None:
    with pytest.raises(ValueError, match=_escape(message)):
        adamw.validate_optim_config(_config(**{key: value}))


def test_bad_config_fails_before_compiling() -> None:
    def compiled():
        return state_lib._init_jit._cache_size() + state_lib._init_jit_cpu._cache_size()

    before = compiled()
    with pytest.raises(ValueError, match="config.warmup_epochs=1.0: has no effect with sched"):
        state_lib.create_train_state(
            _config(schedule="constant", warmup_epochs=1.0), MODEL, steps_per_epoch=10
        )
    with pytest.raises(ValueError, match="steps_per_epoch must be >= 1"):
        state_lib.create_train_state(_config(), MODEL, steps_per_epoch=0)
    config = _config()
    del config["adam_eps"]
    with pytest.raises(ValueError, match=r"config lacks \['adam_eps'\]"):
        state_lib.create_train_state(config, MODEL, steps_per_epoch=10)
    assert compiled() == before
    adamw.validate_optim_config(base_config())


def test_check_finite() -> None:
    steps.check_finite({"loss": np.float32(1.0), "top1": 0.5}, 3)
    with pytest.raises(FloatingPointError, match="non-finite metrics at step 7"):
        steps.check_finite({"loss": np.float32(np.nan), "top1": 0.5}, 7)
    with pytest.raises(FloatingPointError, match="at step 8.*grad_norm"):
        steps.check_finite({"loss": np.float32(1.0), "grad_norm": np.float32(np.inf)}, 8)


def test_step_is_optax_adamw_with_clipping() -> None:
    # One train_step equals optax's masked adamw (after clip_by_global_norm) on the same grads.
    lr, wd, eps, clip = 1e-2, 0.1, 1e-8, 1e-6
    batch = _batch()
    plain = _state(learning_rate=lr, weight_decay=wd)
    clipped = _state(learning_rate=lr, weight_decay=wd, grad_clip_norm=clip)
    grads = _grads(plain, batch)  # the same for both: same seed, same step
    reference = optax.adamw(lr, weight_decay=wd, eps=eps, mask=adamw.decay_mask)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def by_optax(params, grads):
        def step(tx):
            return optax.apply_updates(params, tx.update(grads, tx.init(params), params)[0])

        return step(reference), step(optax.chain(optax.clip_by_global_norm(clip), reference))

    expected = by_optax(plain.params, grads)
    # The clip has an effect the comparison can see.
    assert float(optax.tree.norm(jax.tree.map(jnp.subtract, *expected))) > 1e-3
    for state, want in zip((plain, clipped), expected, strict=True):
        new_state, metrics = steps.train_step(state, batch)
        np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-5)
        # Adam's first step is ~lr * sign(g): rounding in near-zero g moves entries by <1e-5.
        for x, y in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=2e-5)


def test_keras_epsilon_matches_keras_adamw_formula() -> None:
    # Keras (step t=1): p -= lr*wd*p (masked); m = (1-b1) g; v = (1-b2) g^2;
    # p -= lr * sqrt(1 - b2) / (1 - b1) * m / (sqrt(v) + eps).
    lr, wd, b1, b2, eps = 1e-2, 0.1, 0.9, 0.999, 1e-3  # a large eps, so its placement matters
    state = _state(learning_rate=lr, weight_decay=wd, adam_eps=eps, adam_eps_keras=True)
    batch = _batch()
    grads = _grads(state, batch)
    mask = adamw.decay_mask(state.params)
    alpha = lr * math.sqrt(1 - b2) / (1 - b1)

    def keras(p, g, m):
        p = np.asarray(p, np.float64)
        g = np.asarray(g, np.float64)
        p = p - lr * wd * p if m else p
        return p - alpha * ((1 - b1) * g) / (np.sqrt((1 - b2) * g * g) + eps)

    expected = jax.tree.map(keras, state.params, grads, mask)
    new_state, _ = steps.train_step(state, batch)
    for x, y in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def _escape(message: str) -> str:
    for c in "()[]":
        message = message.replace(c, "\\" + c)
    return message
