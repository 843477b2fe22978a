"""Train state, loss, metrics and the jitted step functions.

``train_step(state, batch) -> (state, metrics)`` and ``eval_step(state, batch) -> sums`` are
module-level functions, jitted once under their own names (``jit(train_step)`` in compile logs and
profiles), the train state donated. Everything a sweep varies (peak and final learning rate,
schedule lengths, weight decay, label smoothing, Adam's betas and epsilon, the clipping norm, the
strengths of the recipe tools, the seed) lives in the state as float32 arrays (``state.hparams``)
or a PRNG key (``state.rng``), never as Python constants in the trace, so a sweep over them reuses
one compiled ``train_step``. What selects code is static (``pytree_node=False``): the model, the
optax transformation (its only choice is the decay mask), the schedule's shape, the augmentation
and which recipe tools are on (``state.recipe``, :mod:`swinjax.recipe`: RandAugment or
TrivialAugment, mixup / CutMix, random erasing, the parameters' EMA in ``state.ema_params``).

A population is a leading axis: a state whose leaves are stacked ``[P, ...]``
(:func:`swinjax.population.stack`) goes through the same ``train_step`` / ``eval_step``, which
map the one-model step over the members (``jax.vmap``), the batch shared; metrics and sums then
have shape ``[P]``.

The optimizer recipe (AdamW as optax and Keras define it, the decay mask, the schedule, the
config keys and their validation) is in :mod:`swinjax.optim`; its public names are re-exported
here.

Randomness: step ``s`` uses ``fold_in(state.rng, s)``, split into the augmentation and the
dropout keys, so the stream is a pure function of the seed and the step: a resumed run draws
bit for bit what an uninterrupted one would.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from swinjax import augment, autoaugment, mixing, optim, param_groups
from swinjax import recipe as recipe_lib
from swinjax.optim import (  # noqa: F401  (re-exported: steps.* is the training API)
    HPARAM_KEYS,
    OPTIM_KEYS,
    SCHEDULES,
    decay_mask,
    learning_rate_at,
    make_optimizer,
    validate_optim_config,
)


class TrainState(struct.PyTreeNode):
    """Everything that changes during training, plus the static recipe that shapes the trace."""

    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array  # typed PRNG key; step s uses fold_in(rng, s)
    hparams: dict[str, jax.Array]  # float32 scalars (HPARAM_KEYS) a sweep may vary
    trainable: Any  # per parameter, a float32 scalar: 1.0 trains, 0.0 frozen (param_groups)
    model: nn.Module = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    ema_params: Any = None  # the parameters' EMA (swinjax.recipe) where recipe.ema, else None
    schedule: str = struct.field(pytree_node=False, default="constant")
    augment_mode: str = struct.field(pytree_node=False, default="none")
    crop_padding: int = struct.field(pytree_node=False, default=4)
    mean: tuple[float, ...] = struct.field(pytree_node=False, default=())
    std: tuple[float, ...] = struct.field(pytree_node=False, default=())
    resize_method: str = struct.field(pytree_node=False, default="bilinear")
    recipe: recipe_lib.Recipe = struct.field(pytree_node=False, default=recipe_lib.Recipe())


# ------------------------------------------------------------------------------ train state


def _image_shape(model: nn.Module) -> tuple[int, int, int]:
    img = model.img_size if isinstance(model.img_size, tuple) else (model.img_size,) * 2
    return (int(img[0]), int(img[1]), int(model.in_chans))


def _init_params_and_opt(
    model: nn.Module, tx: optax.GradientTransformation, image_shape: tuple, key: jax.Array
) -> tuple[Any, Any]:
    params = model.init(key, jnp.zeros((1, *image_shape), jnp.float32))["params"]
    return params, tx.init(params)


_init_jit = jax.jit(_init_params_and_opt, static_argnums=(0, 1, 2))
# Initialization runs once per state: on the CPU, XLA's backend optimizations are most of its
# compile time (6 s -> 1.7 s for tiny_test) and buy nothing.
_init_jit_cpu = jax.jit(
    _init_params_and_opt,
    static_argnums=(0, 1, 2),
    compiler_options={"xla_backend_optimization_level": 0},
)


def _hparams(
    config: ml_collections.ConfigDict, steps_per_epoch: int, recipe: recipe_lib.Recipe
) -> dict[str, jax.Array]:
    """``state.hparams``: the float32 scalars of HPARAM_KEYS, plus the strengths of the recipe
    tools that are on."""
    hparams = {
        "learning_rate": config.learning_rate,
        "min_lr": config.min_lr,
        "warmup_steps": round(config.warmup_epochs * steps_per_epoch),
        "total_steps": config.num_epochs * steps_per_epoch,
        "weight_decay": config.weight_decay,
        "label_smoothing": config.label_smoothing,
        "b1": config.b1,
        "b2": config.b2,
        "adam_eps": config.adam_eps,
        "adam_eps_keras": float(config.adam_eps_keras),
        "grad_clip_norm": config.grad_clip_norm,
        "layer_decay": config.layer_decay,
    }
    hparams = {k: hparams[k] for k in HPARAM_KEYS} | recipe_lib.hparams(config, recipe)
    return {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}


def create_train_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    rng: jax.Array | int | None = None,
    *,
    steps_per_epoch: int,
) -> TrainState:
    """A fresh state for ``model`` under ``config``: shapes first (``jax.eval_shape``), then one
    jitted allocation of the parameters and the optimizer state.

    ``rng``: a typed PRNG key (``jax.random.key``), a raw uint32 key or an int seed; None:
    ``config.seed``. It is split into the parameter-init key and ``state.rng``.
    """
    validate_optim_config(config)
    recipe = recipe_lib.from_config(config)
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, numbers.Integral):
        raise ValueError(f"steps_per_epoch must be an int >= 1, got {steps_per_epoch!r}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if rng is None:
        rng = config.seed
    if isinstance(rng, numbers.Integral):
        rng = jax.random.key(int(rng))
    elif not jax.dtypes.issubdtype(jnp.asarray(rng).dtype, jax.dtypes.prng_key):
        rng = jax.random.wrap_key_data(jnp.asarray(rng, jnp.uint32))
    init_key, state_key = jax.random.split(rng)

    mean, std = augment.normalization(config.normalize, config.dataset, config.mean, config.std)
    tx = make_optimizer(config)
    shape = _image_shape(model)
    init = _init_jit_cpu if jax.default_backend() == "cpu" else _init_jit
    # Shapes first, by tracing alone: an architecture or optimizer error surfaces here, before
    # anything is compiled or allocated. The trace is cached: the allocation reuses it.
    init.eval_shape(model, tx, shape, init_key)
    params, opt_state = init(model, tx, shape, init_key)

    hparams = _hparams(config, steps_per_epoch, recipe)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        rng=state_key,
        hparams=hparams,
        trainable=param_groups.trainable_mask(params, config.freeze),
        ema_params=jax.tree.map(jnp.copy, params) if recipe.ema else None,
        model=model,
        tx=tx,
        schedule=config.schedule,
        augment_mode=config.get("augment", "none"),
        crop_padding=config.get("crop_padding", 4),
        mean=mean,
        std=std,
        resize_method=config.resize_method,
        recipe=recipe,
    )


# ------------------------------------------------------------------------- loss and metrics


def cross_entropy(logits_BK: jax.Array, labels_B: jax.Array, smoothing: Any) -> jax.Array:
    """Per-example softmax cross-entropy against ``one_hot * (1 - s) + s / K`` targets: Keras'
    ``CategoricalCrossentropy(label_smoothing=s)``; ``s`` may be an array (traced)."""
    K = logits_BK.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels_B, K), smoothing)
    return optax.softmax_cross_entropy(logits_BK.astype(jnp.float32), targets)


def topk_correct(logits_BK: jax.Array, labels_B: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the ``min(k, K)`` highest logits, else 0.0.

    Ties count in the label's favour (as ``tf.math.in_top_k``); a non-finite label logit is
    never correct.
    """
    k = min(k, logits_BK.shape[-1])
    label_logit = jnp.take_along_axis(logits_BK, labels_B[:, None], axis=-1)
    rank = jnp.sum(logits_BK > label_logit, axis=-1)
    return ((rank < k) & jnp.isfinite(label_logit[:, 0])).astype(jnp.float32)


def _inputs(state: TrainState, images: jax.Array) -> jax.Array:
    """float32 model inputs: uint8 scaled to [0, 1], then the configured mean/std, if any, then
    resized to the model's input size where the images have another (CIFAR's 32x32 for a
    224x224 Swin-T), with ``state.resize_method``."""
    x = augment.normalize(images, state.mean or None, state.std or None)
    return augment.resize(x, _image_shape(state.model)[:2], state.resize_method)


# -------------------------------------------------------------------------------- the steps


def _train_inputs(
    state: TrainState, key: jax.Array, batch: dict[str, jax.Array]
) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """The augmented model inputs, soft targets (None without mixing) and the labels metrics
    count against (the dominant label of a mixed image).

    Order: the geometric ``augment_mode`` (from ``key`` itself, as before any extra existed),
    then ``augment_policy`` on the raw images, normalization and resize, random erasing, then
    mixup / CutMix; each extra from its own ``fold_in(key, i)``.
    """
    r, hp = state.recipe, state.hparams
    images = augment.augment(key, batch["image"], state.augment_mode, state.crop_padding)
    if r.policy:
        magnitude = hp.get("randaug_magnitude", 0.0)
        policy_key = jax.random.fold_in(key, 1)
        images = autoaugment.apply_policy(policy_key, images, r.policy, r.num_ops, magnitude)
    x = _inputs(state, images)
    if r.erase:
        x = mixing.random_erase(jax.random.fold_in(key, 2), x, hp["erase_prob"])
    labels = batch["label"]
    if not r.mixing:
        return x, None, labels
    x, targets, dominant, _ = mixing.mix(
        jax.random.fold_in(key, 3),
        x,
        labels,
        state.model.num_classes,
        hp["label_smoothing"],
        hp,
        mixup=r.mixup,
        cutmix=r.cutmix,
    )
    return x, targets, dominant


def _one_train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    """One AdamW step of one model on ``batch = {"image": uint8 or [0, 1] float [B, H, W, C],
    "label": [B]}``.

    The batch is augmented here, on the device (``state.augment_mode``, then the extras of
    ``state.recipe``: :func:`_train_inputs`); metrics are float32 scalars: ``loss``, ``top1``,
    ``top5`` (against the dominant label of a mixed image), ``learning_rate`` and ``grad_norm``
    (before clipping). Frozen parameters (``state.trainable``) get no gradient and no update;
    the others' updates are scaled by their layer's learning-rate factor
    (``hparams["layer_decay"]``). With ``recipe.ema`` the EMA of the parameters follows.
    """
    step_key = jax.random.fold_in(state.rng, state.step)
    aug_key, dropout_key = jax.random.split(step_key)
    x, targets, labels = _train_inputs(state, aug_key, batch)

    def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
        logits = state.model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
        if targets is None:
            loss = cross_entropy(logits, labels, state.hparams["label_smoothing"]).mean()
        else:
            loss = mixing.soft_cross_entropy(logits, targets).mean()
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = jax.tree.map(lambda g, t: g * t.astype(g.dtype), grads, state.trainable)
    grad_norm = optax.tree.norm(grads)
    grads = optim.clip_by_global_norm(grads, grad_norm, state.hparams["grad_clip_norm"])
    lr = optim.learning_rate_at(state.step, state.hparams, state.schedule)
    updates, opt_state = optim.adamw_update(
        state.tx,
        state.opt_state,
        state.params,
        grads,
        step=state.step,
        learning_rate=lr,
        hparams=state.hparams,
    )
    updates = param_groups.scale_updates(updates, state.hparams["layer_decay"], state.trainable)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "top1": topk_correct(logits, labels, 1).mean(),
        "top5": topk_correct(logits, labels, 5).mean(),
        "learning_rate": lr,
        "grad_norm": grad_norm,
    }
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    if state.recipe.ema:
        ema = recipe_lib.ema_update(
            state.ema_params, params, new_state.step, state.hparams["ema_decay"]
        )
        new_state = new_state.replace(ema_params=ema)
    return new_state, jax.tree.map(lambda m: m.astype(jnp.float32), metrics)


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    """One AdamW step on ``batch``; for a population (``state.step`` of shape ``[P]``) one step of
    every member on the same batch, metrics ``[P]``. See :func:`_one_train_step`."""
    if state.step.ndim:
        return jax.vmap(_one_train_step, in_axes=(0, None))(state, batch)
    return _one_train_step(state, batch)


def _one_eval_step(
    state: TrainState, batch: dict[str, jax.Array], tta: bool = False, tta_shift: int = 0
) -> dict[str, jax.Array]:
    """SUMS over the real rows (``mask`` = 1; no mask: all rows) of ``loss`` (with the training
    label smoothing, as Keras reports it), ``top1``, ``top5``, and their ``count``: add them up
    over batches and divide once, exact whatever the padding. ``tta``: scored on the average of
    the softmaxes of the views :func:`tta_views` makes (:func:`tta_scores`)."""
    x = _inputs(state, batch["image"])
    if tta:
        views_VBHWC = tta_views(x, tta_shift)
        V, B = views_VBHWC.shape[:2]  # every image is scored on its own: one batch of V * B
        logits = state.model.apply(
            {"params": state.params}, views_VBHWC.reshape(V * B, *x.shape[1:])
        )
        logits = tta_scores(logits.reshape(V, B, -1))
    else:
        logits = state.model.apply({"params": state.params}, x)
    labels = batch["label"]
    mask = batch.get("mask", jnp.ones(labels.shape, jnp.float32)).astype(jnp.float32)
    real = mask > 0

    def total(per_example: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(real, per_example * mask, 0.0))  # padding's NaN stays out

    return {
        "loss": total(cross_entropy(logits, labels, state.hparams["label_smoothing"])),
        "top1": total(topk_correct(logits, labels, 1)),
        "top5": total(topk_correct(logits, labels, 5)),
        "count": jnp.sum(mask),
    }


def tta_views(x_BHWC: jax.Array, shift: int = 0) -> jax.Array:
    """The test-time views of a batch, ``(V, B, H, W, C)``: the images and their mirrors; with
    ``shift`` > 0 also each of the two moved by ``(shift, shift)`` and ``(-shift, -shift)``
    pixels (reflect padding), six views in all: airbench's flip-and-translate test-time
    augmentation (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU")."""
    H, W = x_BHWC.shape[1:3]
    if not 0 <= shift < min(H, W):
        raise ValueError(f"tta shift {shift}: must be >= 0 and below the image size {H}x{W}")
    mirrored = x_BHWC[:, :, ::-1]
    views = [x_BHWC, mirrored]
    if shift:
        s = int(shift)
        for image in (x_BHWC, mirrored):
            padded = jnp.pad(image, ((0, 0), (s, s), (s, s), (0, 0)), mode="reflect")
            views.append(padded[:, 2 * s : 2 * s + H, 2 * s : 2 * s + W])  # moved by (-s, -s)
            views.append(padded[:, :H, :W])  # moved by (+s, +s)
    return jnp.stack(views)


def tta_scores(logits_VBK: jax.Array) -> jax.Array:
    """Test-time augmentation's scores: ``log(mean_v softmax(logits_v))``, the log of the views'
    average probabilities. Used as logits, its softmax IS that average, so the loss is the
    log-loss of the averaged prediction and top-k ranks by it. Probabilities rather than logits
    are averaged: the views are an ensemble of predictions, and a view that is confidently
    wrong cannot outvote confident right ones by its logit scale alone."""
    views = logits_VBK.shape[0]
    return jax.nn.logsumexp(jax.nn.log_softmax(logits_VBK), axis=0) - jnp.log(float(views))


@functools.partial(jax.jit, static_argnames=("tta", "tta_shift"))
def eval_step(
    state: TrainState, batch: dict[str, jax.Array], tta: bool = False, tta_shift: int = 0
) -> dict:
    """Sums over the batch's real rows (see :func:`_one_eval_step`); ``[P]`` for a population."""
    one = functools.partial(_one_eval_step, tta=tta, tta_shift=tta_shift)
    if state.step.ndim:
        return jax.vmap(one, in_axes=(0, None))(state, batch)
    return one(state, batch)


@jax.jit
def predict(state: TrainState, images: jax.Array) -> jax.Array:
    """Logits for a batch of (uint8 or [0, 1] float) images."""
    return state.model.apply({"params": state.params}, _inputs(state, images))


def check_finite(metrics: dict[str, Any], step: int) -> None:
    """Raises FloatingPointError naming the step if a fetched metric is NaN or infinite."""
    bad = {k: np.asarray(v).tolist() for k, v in metrics.items() if not np.all(np.isfinite(v))}
    if bad:
        raise FloatingPointError(
            f"non-finite metrics at step {step}: {bad}; training stopped, no checkpoint written "
            "for this step (the best and latest checkpoints are untouched). Lower "
            "--config.learning_rate, enable --config.grad_clip_norm, or use float32."
        )
