"""Train state, optimizer, loss and the jitted step functions.

``train_step(state, batch) -> (state, metrics)`` and ``eval_step(state, batch) -> sums`` are
module-level functions, jitted once, the train state donated. What a sweep varies (learning
rate, weight decay, label smoothing, schedule lengths, the seed) lives in the state as float32
arrays (``state.hparams``, ``state.rng``), never as Python constants in the trace, so a sweep
over them reuses one compiled ``train_step``; ``_train_step`` is the same function unjitted, to
``jax.vmap`` over a population of states.

Optimizer: AdamW as optax builds it (``optax.adamw`` under ``optax.inject_hyperparams``, so the
learning rate and weight decay are state, set each step). Decay is decoupled and multiplied by
the learning rate, ``p -= lr * (adam_update + wd * p)``, which is also what Keras' AdamW does.
By default biases, norms, the absolute position embedding and relative-position tables are not
decayed (``decay_all=True``: everything is, as in Keras).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct, traverse_util

from swinjax import augment

SCHEDULES = ("constant", "warmup_cosine")


class TrainState(struct.PyTreeNode):
    """Everything that changes during training, plus the static recipe that shapes the trace."""

    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array  # typed PRNG key; step s uses fold_in(rng, s)
    hparams: dict[str, jax.Array]  # float32 scalars a sweep may vary
    model: nn.Module = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    schedule: str = struct.field(pytree_node=False, default="constant")
    augment_mode: str = struct.field(pytree_node=False, default="none")
    crop_padding: int = struct.field(pytree_node=False, default=4)
    mean: tuple[float, ...] = struct.field(pytree_node=False, default=())
    std: tuple[float, ...] = struct.field(pytree_node=False, default=())


def default_optim_config() -> ml_collections.ConfigDict:
    """The Keras seed recipe's optimizer: AdamW 1e-3 / 1e-4, label smoothing 0.1, constant LR."""
    c = ml_collections.ConfigDict()
    c.learning_rate = 1e-3
    c.weight_decay = 1e-4
    c.label_smoothing = 0.1
    c.seed = 0
    c.schedule = "constant"  # or "warmup_cosine"
    c.warmup_epochs = 0.0
    c.min_lr = 0.0
    c.grad_clip_norm = 0.0  # 0: no clipping
    c.decay_all = False  # True: decay biases, norms and position tables too (Keras)
    c.b1 = 0.9
    c.b2 = 0.999
    c.adam_eps = 1e-8
    return c


def validate_optim_config(c: ml_collections.ConfigDict) -> None:
    def bad(key: str, rule: str) -> ValueError:
        return ValueError(f"config.{key}={c[key]!r}: {rule}")

    if not c.learning_rate > 0:
        raise bad("learning_rate", "must be > 0")
    if not c.weight_decay >= 0:
        raise bad("weight_decay", "must be >= 0")
    if not 0 <= c.label_smoothing < 1:
        raise bad("label_smoothing", "must be in [0, 1)")
    if c.schedule not in SCHEDULES:
        raise bad("schedule", f"must be one of {SCHEDULES}")
    if not 0 <= c.warmup_epochs <= c.num_epochs:
        raise bad("warmup_epochs", "must be in [0, num_epochs]")
    if not 0 <= c.min_lr <= c.learning_rate:
        raise bad("min_lr", "must be in [0, learning_rate]")
    if not c.grad_clip_norm >= 0:
        raise bad("grad_clip_norm", "must be >= 0 (0: off)")
    for key in ("b1", "b2"):
        if not 0 <= c[key] < 1:
            raise bad(key, "must be in [0, 1)")
    if not c.adam_eps > 0:
        raise bad("adam_eps", "must be > 0")


def decay_mask(params: Any, decay_all: bool = False) -> Any:
    """True for the leaves weight decay applies to: dense and conv kernels (or all leaves)."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: decay_all or k[-1] == "kernel" for k in flat})


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW whose learning rate and weight decay are injected state, not constants.

    Built once per distinct static recipe (betas, epsilon, clipping, decay mask rule): every
    state of a sweep shares the same transformation object, so ``train_step`` compiles once.
    """
    return _optimizer(
        float(config.b1),
        float(config.b2),
        float(config.adam_eps),
        float(config.grad_clip_norm),
        bool(config.decay_all),
    )


@functools.cache
def _optimizer(
    b1: float, b2: float, eps: float, clip: float, decay_all: bool
) -> optax.GradientTransformation:
    def adamw(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
        opt = optax.adamw(
            learning_rate,
            b1=b1,
            b2=b2,
            eps=eps,
            weight_decay=weight_decay,
            mask=functools.partial(decay_mask, decay_all=decay_all),
        )
        return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt

    return optax.inject_hyperparams(adamw)(learning_rate=0.0, weight_decay=0.0)


def create_train_state(
    config: ml_collections.ConfigDict, model: nn.Module, *, steps_per_epoch: int
) -> TrainState:
    """A fresh state for ``model`` under ``config`` (shapes first, then one allocation)."""
    validate_optim_config(config)
    root = jax.random.key(config.seed)
    init_key, state_key = jax.random.split(root)
    img = model.img_size if isinstance(model.img_size, tuple) else (model.img_size,) * 2
    dummy = jax.ShapeDtypeStruct((1, *img, model.in_chans), jnp.float32)
    tx = make_optimizer(config)
    params = jax.jit(model.init)(init_key, jnp.zeros(dummy.shape, dummy.dtype))["params"]
    hparams = {
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "label_smoothing": config.label_smoothing,
        "min_lr": config.min_lr,
        "warmup_steps": round(config.warmup_epochs * steps_per_epoch),
        "total_steps": config.num_epochs * steps_per_epoch,
    }
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=state_key,
        hparams={k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()},
        model=model,
        tx=tx,
        schedule=config.schedule,
        augment_mode=config.get("augment", "none"),
        crop_padding=config.get("crop_padding", 4),
        mean=tuple(config.get("mean", ())),
        std=tuple(config.get("std", ())),
    )


def learning_rate_at(step: jax.Array, hparams: dict[str, jax.Array], schedule: str) -> jax.Array:
    """The learning rate of optimizer step ``step`` (0-based), from array hyperparameters."""
    peak = hparams["learning_rate"]
    if schedule == "constant":
        return peak
    s = step.astype(jnp.float32)
    warm, total, low = hparams["warmup_steps"], hparams["total_steps"], hparams["min_lr"]
    warmup_lr = peak * (s + 1.0) / jnp.maximum(warm, 1.0)
    progress = jnp.clip((s - warm) / jnp.maximum(total - warm, 1.0), 0.0, 1.0)
    cosine_lr = low + (peak - low) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
    return jnp.where(s < warm, warmup_lr, cosine_lr)


def cross_entropy(logits_BK: jax.Array, labels_B: jax.Array, smoothing: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy against one-hot * (1 - s) + s / K targets (Keras')."""
    K = logits_BK.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels_B, K), smoothing)
    return optax.softmax_cross_entropy(logits_BK, targets)


def topk_correct(logits_BK: jax.Array, labels_B: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the k highest logits (ties: the label's rank by count)."""
    k = min(k, logits_BK.shape[-1])
    label_logit = jnp.take_along_axis(logits_BK, labels_B[:, None], axis=-1)
    rank = jnp.sum(logits_BK > label_logit, axis=-1)
    return (rank < k).astype(jnp.float32)


def _inputs(state: TrainState, images: jax.Array) -> jax.Array:
    return augment.normalize(images, state.mean or None, state.std or None)


def _train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    step_key = jax.random.fold_in(state.rng, state.step)
    aug_key, dropout_key = jax.random.split(step_key)
    images = augment.augment(aug_key, batch["image"], state.augment_mode, state.crop_padding)
    x = _inputs(state, images)
    labels = batch["label"]

    def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
        logits = state.model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
        loss = cross_entropy(logits, labels, state.hparams["label_smoothing"]).mean()
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    lr = learning_rate_at(state.step, state.hparams, state.schedule)
    opt_state = state.opt_state
    hyper = dict(
        opt_state.hyperparams, learning_rate=lr, weight_decay=state.hparams["weight_decay"]
    )
    opt_state = opt_state._replace(hyperparams=hyper)
    updates, opt_state = state.tx.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "top1": topk_correct(logits, labels, 1).mean(),
        "top5": topk_correct(logits, labels, 5).mean(),
        "learning_rate": lr,
        "grad_norm": optax.tree.norm(grads),
    }
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics


train_step = jax.jit(_train_step, donate_argnums=0)


def _eval_step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Sums over the real rows (``mask`` = 1) of a padded batch, and their ``count``."""
    logits = state.model.apply({"params": state.params}, _inputs(state, batch["image"]))
    labels = batch["label"]
    mask = batch.get("mask", jnp.ones(labels.shape, jnp.float32))
    loss = cross_entropy(logits, labels, state.hparams["label_smoothing"])
    return {
        "loss": jnp.sum(loss * mask),
        "top1": jnp.sum(topk_correct(logits, labels, 1) * mask),
        "top5": jnp.sum(topk_correct(logits, labels, 5) * mask),
        "count": jnp.sum(mask),
    }


eval_step = jax.jit(_eval_step)


@jax.jit
def predict(state: TrainState, images: jax.Array) -> jax.Array:
    """Logits for a batch of (uint8 or [0, 1] float) images."""
    return state.model.apply({"params": state.params}, _inputs(state, images))


def check_finite(metrics: dict[str, Any], step: int) -> None:
    """Raises FloatingPointError naming the step if a fetched metric is NaN or infinite."""
    bad = {k: float(v) for k, v in metrics.items() if not np.all(np.isfinite(np.asarray(v)))}
    if bad:
        raise FloatingPointError(
            f"non-finite metrics at step {step}: {bad}; training stopped, no checkpoint written "
            "for this step (the best and latest checkpoints are untouched). Lower "
            "--config.learning_rate, enable --config.grad_clip_norm, or use float32."
        )
