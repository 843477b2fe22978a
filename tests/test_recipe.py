"""Recipe tools in the train step: existing recipes unchanged bit for bit, the parameters' EMA,
flip test-time augmentation, the new schedules, one compile per sweep, the keys' validation.

The train steps here share one static recipe (tiny_test, every tool on: :func:`_tools_config`),
so the module compiles the full ``train_step`` once.
"""

from __future__ import annotations

import importlib.util
import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from swinjax.augment import transforms
from swinjax.config import build_model, upgrade_saved_config, validate_config
from swinjax.models import create_model
from swinjax.optim import adamw, ema, param_groups, schedules
from swinjax.sweeps import space
from swinjax.training import losses, recipe, steps, tta
from swinjax.training import state as state_lib
from tests.conftest import REPO, make_tiny_config

MODEL = create_model("tiny_test")


def _experiment(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _batch(n=8, size=16, seed=0):
    key = jax.random.key(seed)
    images = jax.random.randint(key, (n, size, size, 3), 0, 256).astype(jnp.uint8)
    return {"image": images, "label": jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, 10)}


def _tools_config(**overrides):
    tools = dict(
        augment_policy="randaugment",
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        erase_prob=0.25,
        ema_decay=0.5,
        schedule="one_cycle",
        warmup_epochs=1.0,
    )
    return make_tiny_config(**{**tools, **overrides})


def _state(**overrides):
    return state_lib.create_train_state(_tools_config(**overrides), MODEL, steps_per_epoch=4)


# --------------------------------------------------------- existing recipes stay as they were


def _step_before_recipe_tools(state, batch):
    """``steps._one_train_step`` as it was before the recipe tools existed (commit 3ec1a28)."""
    step_key = jax.random.fold_in(state.rng, state.step)
    aug_key, dropout_key = jax.random.split(step_key)
    images = transforms.augment(aug_key, batch["image"], state.augment_mode, state.crop_padding)
    x = steps._inputs(state, images)
    labels = batch["label"]

    def loss_fn(params):
        logits = state.model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
        loss = losses.cross_entropy(logits, labels, state.hparams["label_smoothing"]).mean()
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = jax.tree.map(lambda g, t: g * t.astype(g.dtype), grads, state.trainable)
    grad_norm = optax.tree.norm(grads)
    grads = adamw.clip_by_global_norm(grads, grad_norm, state.hparams["grad_clip_norm"])
    lr = schedules.learning_rate_at(state.step, state.hparams, state.schedule)
    updates, opt_state = adamw.adamw_update(
        state.tx, state.opt_state, state.params, grads, step=state.step, learning_rate=lr,
        hparams=state.hparams,
    )  # fmt: skip
    updates = param_groups.scale_updates(updates, state.hparams["layer_decay"], state.trainable)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "top1": losses.topk_correct(logits, labels, 1).mean(),
        "top5": losses.topk_correct(logits, labels, 5).mean(),
        "learning_rate": lr,
        "grad_norm": grad_norm,
    }
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, jax.tree.map(lambda m: m.astype(jnp.float32), metrics)


@pytest.mark.slow
def test_keras_example_train_step_is_unchanged_bitwise() -> None:
    config = _experiment("keras_example")
    state = state_lib.create_train_state(config, create_model(config.model), steps_per_epoch=10)
    assert state.recipe == recipe.Recipe() and state.ema_params is None
    assert set(state.hparams) == {  # the tools' arrays are absent too
        "learning_rate", "min_lr", "warmup_steps", "total_steps", "weight_decay",
        "label_smoothing", "b1", "b2", "adam_eps", "adam_eps_keras", "grad_clip_norm",
        "layer_decay",
    }  # fmt: skip
    batch = _batch(n=4, size=32)
    want_state, want = jax.jit(_step_before_recipe_tools)(state, batch)
    got_state, got = steps.train_step(state, batch)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    got_state, want_state = (
        s.replace(rng=jax.random.key_data(s.rng)) for s in (got_state, want_state)
    )
    for a, b in zip(jax.tree.leaves(got_state), jax.tree.leaves(want_state), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------ EMA


@pytest.mark.slow
def test_ema_is_the_bias_corrected_average_of_the_steps() -> None:
    d = 0.5
    state = _state(ema_decay=d)
    for e, p in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(e, p)  # a copy of the initial parameters
    batch, seen = _batch(), []
    for t in range(1, 4):
        state, _ = steps.train_step(state, batch)
        seen.append(jax.device_get(state.params))
        w = np.array([d ** (t - k) for k in range(1, t + 1)])
        w = w / w.sum()  # d^(t-k) (1 - d) / (1 - d^t), k = 1..t
        want = jax.tree.map(
            lambda *p, w=w: sum(wk * pk for wk, pk in zip(w, p, strict=True)), *seen
        )
        for e, x in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(e, x, rtol=1e-5, atol=1e-7)
    assert not np.array_equal(jax.tree.leaves(state.ema_params)[0], jax.tree.leaves(seen[-1])[0])


def test_ema_update_is_accurate_near_one() -> None:
    p0, p1 = {"w": jnp.float32(1.0)}, {"w": jnp.float32(3.0)}
    for d in (0.9, 0.9999):
        first = ema.ema_update(p0, p1, jnp.int32(1), jnp.float32(d))
        np.testing.assert_array_equal(first["w"], 3.0)  # d_1 = 0: the first step's params
        second = ema.ema_update(p1, p0, jnp.int32(2), jnp.float32(d))
        np.testing.assert_allclose(second["w"], (d * 3.0 + 1.0) / (1 + d), rtol=1e-6)


def test_sweep_over_tool_strengths_compiles_train_step_once() -> None:
    batch = _batch()
    sweep = [
        dict(ema_decay=0.9, mixup_alpha=0.2, cutmix_alpha=1.0, erase_prob=0.1),
        dict(ema_decay=0.99, mixup_alpha=0.8, cutmix_alpha=0.5, erase_prob=0.5, mix_prob=0.5,
             mix_switch_prob=0.9, randaug_magnitude=3.0),
        dict(ema_decay=0.999, randaug_magnitude=10.0, warmup_epochs=2.0, min_lr=1e-4, seed=3),
    ]  # fmt: skip
    sizes = []
    for overrides in sweep:
        state = _state(**overrides)
        for key in ("ema_decay", "mixup_alpha", "erase_prob", "randaug_magnitude"):
            if key in overrides:
                np.testing.assert_allclose(float(state.hparams[key]), overrides[key], rtol=1e-6)
        steps.train_step(state, batch)
        sizes.append(steps.train_step._cache_size())
    assert sizes[0] == sizes[1] == sizes[2], f"train_step recompiled: cache sizes {sizes}"


def test_population_sweeps_need_the_same_tools_on() -> None:
    config = _tools_config(num_epochs=2)
    config.sweep = space.default_sweep_config()
    config.sweep.execution = "population"
    config.sweep.grid = {"ema_decay": [0.9, 0.999], "mixup_alpha": [0.2, 0.8]}
    space.validate_sweep(*space.split_config(config))
    config.sweep.grid = {"ema_decay": [0.0, 0.999]}
    with pytest.raises(ValueError, match="turn different recipe tools on or off"):
        space.validate_sweep(*space.split_config(config))


# ---------------------------------------------------------------------------- TTA


def test_tta_scores_average_the_views_softmaxes() -> None:
    logits_VBK = jax.random.normal(jax.random.key(0), (3, 5, 7)) * 3
    scores = tta.tta_scores(logits_VBK)
    want = jnp.mean(jax.nn.softmax(logits_VBK), axis=0)
    np.testing.assert_allclose(jax.nn.softmax(scores), want, rtol=1e-5)
    np.testing.assert_allclose(jnp.exp(scores), want, rtol=1e-5)


def test_tta_shift_beyond_the_image_fails_before_compiling() -> None:
    config = make_tiny_config(eval_tta=True, eval_tta_shift=16)
    split = types.SimpleNamespace(image_shape=(16, 16, 3), num_classes=10)
    with pytest.raises(ValueError, match="config.eval_tta_shift=16: the test-time views must"):
        build_model(config, split)
    config.eval_tta_shift = 15
    assert build_model(config, split).img_size == (16, 16)


def test_tta_views_are_image_mirror_and_their_moves() -> None:
    x = jax.random.normal(jax.random.key(2), (2, 6, 5, 3))
    flip = x[:, :, ::-1]
    np.testing.assert_array_equal(tta.tta_views(x), jnp.stack([x, flip]))
    views = tta.tta_views(x, 2)
    assert views.shape == (6, 2, 6, 5, 3)
    for k, image in ((2, x), (4, flip)):
        # moved by (-2, -2): pixel (i, j) shows (i + 2, j + 2); by (+2, +2): (i - 2, j - 2)
        np.testing.assert_array_equal(views[k][:, :4, :3], image[:, 2:, 2:])
        np.testing.assert_array_equal(views[k + 1][:, 2:, 2:], image[:, :4, :3])
        # the edges are mirrored (reflect padding): row -1 is row 1
        np.testing.assert_array_equal(views[k + 1][:, 1, 2:], image[:, 1, :3])
    with pytest.raises(ValueError, match="tta shift 5: must be >= 0 and below the image size"):
        tta.tta_views(x, 5)


@pytest.mark.parametrize("shift", [0, 1])
def test_eval_step_tta_scores_the_views(shift) -> None:
    state = state_lib.create_train_state(make_tiny_config(), MODEL, steps_per_epoch=4)
    batch = _batch()
    got = steps.eval_step(state, batch, tta=True, tta_shift=shift)
    x = steps._inputs(state, batch["image"])
    logits_VBK = jnp.stack(
        [state.model.apply({"params": state.params}, v) for v in tta.tta_views(x, shift)]
    )
    assert logits_VBK.shape[0] == (6 if shift else 2)
    scores = tta.tta_scores(logits_VBK)
    labels = batch["label"]
    np.testing.assert_allclose(
        got["loss"], losses.cross_entropy(scores, labels, 0.1).sum(), rtol=1e-5
    )
    np.testing.assert_allclose(got["top1"], losses.topk_correct(scores, labels, 1).sum())
    plain = steps.eval_step(state, batch)
    np.testing.assert_allclose(
        plain["loss"], losses.cross_entropy(logits_VBK[0], labels, 0.1).sum(), rtol=1e-5
    )
    assert float(plain["loss"]) != float(got["loss"])


# ------------------------------------------------------------------------------ schedules


def _hp(warmup=4.0, total=14.0, low=0.0):
    return {
        "learning_rate": jnp.float32(1.0),
        "min_lr": jnp.float32(low),
        "warmup_steps": jnp.float32(warmup),
        "total_steps": jnp.float32(total),
    }


_lr = jax.jit(schedules.learning_rate_at, static_argnums=2)


def test_warmup_linear_schedule() -> None:
    lr = [float(_lr(jnp.int32(s), _hp(), "warmup_linear")) for s in range(16)]
    np.testing.assert_allclose(lr[:4], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(lr[4:15], np.linspace(1.0, 0.0, 11), atol=1e-6)  # to 0 at the end
    np.testing.assert_allclose(lr[15], 0.0)
    low = float(_lr(jnp.int32(9), _hp(low=0.1), "warmup_linear"))
    np.testing.assert_allclose(low, 0.1 + 0.9 * 0.5, rtol=1e-6)


def test_one_cycle_schedule() -> None:
    lr = [float(_lr(jnp.int32(s), _hp(), "one_cycle")) for s in range(16)]
    start = 1.0 / 25
    rise = [start + (1 - start) * 0.5 * (1 - math.cos(math.pi * s / 4)) for s in range(4)]
    np.testing.assert_allclose(lr[:4], rise, rtol=1e-6)
    np.testing.assert_allclose(lr[4], 1.0)  # the peak after the cycle's fraction
    np.testing.assert_allclose(lr[9], 0.5, atol=1e-6)  # half-way down the cosine
    np.testing.assert_allclose(lr[14:], 0.0, atol=1e-7)
    assert np.all(np.diff(lr[:5]) > 0) and np.all(np.diff(lr[4:15]) < 0)


@pytest.mark.parametrize("schedule", ["warmup_linear", "one_cycle", "warmup_cosine"])
def test_schedule_values_do_not_recompile(schedule) -> None:
    _lr(jnp.int32(3), _hp(), schedule)
    before = _lr._cache_size()
    for hp in (_hp(warmup=0.0), _hp(warmup=10.0, total=1000.0, low=0.01)):
        assert np.isfinite(float(_lr(jnp.int32(5), hp, schedule)))
    assert _lr._cache_size() == before


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"augment_policy": "autoaug"}, "config.augment_policy='autoaug': use one of"),
        ({"augment_policy": "randaugment", "randaug_num_ops": 0}, "config.randaug_num_ops=0"),
        ({"augment_policy": "randaugment", "randaug_magnitude": 11.0},
         r"config.randaug_magnitude=11.0: must be a number in \[0.0, 10.0\]"),
        ({"mixup_alpha": -1.0}, r"config.mixup_alpha=-1.0: must be a number in \[0.0, inf\)"),
        ({"cutmix_alpha": math.nan}, "config.cutmix_alpha=nan"),
        ({"mixup_alpha": 0.8, "mix_prob": 1.5}, "config.mix_prob=1.5"),
        ({"cutmix_alpha": 1.0, "mix_switch_prob": -0.1}, "config.mix_switch_prob=-0.1"),
        ({"erase_prob": 2.0}, "config.erase_prob=2.0"),
        ({"ema_decay": 1.0}, r"config.ema_decay=1.0: must be a number in \[0.0, 1.0\)"),
        ({"schedule": "cosine"}, "config.schedule='cosine': must be one of"),
        ({"eval_tta": True, "eval_tta_shift": -1}, "config.eval_tta_shift=-1: must be a whole"),
        ({"eval_tta_shift": 1}, "eval_tta is off; set --config.eval_tta=True"),
    ],
)  # fmt: skip
def test_bad_recipe_keys_fail_naming_the_key(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        validate_config(make_tiny_config(**overrides))


def test_tools_default_off() -> None:
    config = make_tiny_config()
    assert recipe.from_config(config) == recipe.Recipe()
    assert recipe.hparams(config, recipe.Recipe()) == {}
    old = make_tiny_config()
    for key in ("augment_policy", "mixup_alpha", "cutmix_alpha", "erase_prob", "ema_decay"):
        del old[key]  # a config saved before the key existed: the tool is off
    old = ml_collections.ConfigDict(upgrade_saved_config(old.to_dict()))
    assert recipe.from_config(old) == recipe.Recipe()
    on = recipe.from_config(_tools_config())
    assert on == recipe.Recipe("randaugment", 2, True, True, True, True)
    assert set(recipe.hparams(_tools_config(), on)) == {
        "randaug_magnitude", "mixup_alpha", "cutmix_alpha", "mix_prob", "mix_switch_prob",
        "erase_prob", "ema_decay",
    }  # fmt: skip
