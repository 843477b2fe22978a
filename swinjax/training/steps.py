"""The jitted step functions: ``train_step(state, batch) -> (state, metrics)``,
``eval_step(state, batch) -> sums``, ``predict(state, images) -> logits`` and
``features(state, images, kind)``.

They are module-level functions, jitted once under their own names (``jit(train_step)`` in
compile logs and profiles), the train state donated. Everything a sweep varies lives in the
state as arrays (:mod:`swinjax.training.state`), never as Python constants in the trace, so a
sweep over them reuses one compiled ``train_step``.

A population is a leading axis: a state whose leaves are stacked ``[P, ...]``
(:func:`swinjax.training.population.stack`) goes through the same ``train_step`` /
``eval_step``, which map the one-model step over the members (``jax.vmap``), the batch shared;
metrics and sums then have shape ``[P]``.

Randomness: step ``s`` uses ``fold_in(state.rng, s)``, split into the augmentation and the
dropout keys, so the stream is a pure function of the seed and the step: a resumed run draws
bit for bit what an uninterrupted one would. With gradient accumulation
(``state.grad_accum_steps`` k > 1) microbatch ``i`` of step ``s`` uses ``fold_in(fold_in(state.rng,
s), i)`` the same way.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from swinjax.augment import autoaugment, mixing, transforms
from swinjax.errors import TrainingDivergedError
from swinjax.optim import adamw, param_groups, schedules
from swinjax.optim.ema import ema_update
from swinjax.training.losses import cross_entropy, topk_correct
from swinjax.training.state import TrainState, image_shape
from swinjax.training.tta import tta_scores, tta_views


def _inputs(state: TrainState, images: jax.Array) -> jax.Array:
    """float32 model inputs: uint8 scaled to [0, 1], then the configured mean/std, if any, then
    resized to the model's input size where the images have another (CIFAR's 32x32 for a
    224x224 Swin-T), with ``state.resize_method``."""
    x = transforms.normalize(images, state.mean or None, state.std or None)
    return transforms.resize(x, image_shape(state.model)[:2], state.resize_method)


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
    images = transforms.augment(key, batch["image"], state.augment_mode, state.crop_padding)
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


def grads_and_metrics(
    state: TrainState, aug_key: jax.Array, dropout_key: jax.Array, batch: dict[str, jax.Array]
) -> tuple[Any, dict[str, jax.Array]]:
    """The gradients of the mean loss over ``batch`` (augmented with ``aug_key``, dropout from
    ``dropout_key``) and its ``loss``, ``top1`` and ``top5`` (means over the batch): one
    microbatch's work, which :func:`_accumulated` scans over (the benchmark counts its FLOPs)."""
    x, targets, labels = _train_inputs(state, aug_key, batch)

    def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
        logits = state.model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
        if targets is None:
            loss = cross_entropy(logits, labels, state.hparams["label_smoothing"]).mean()
        else:
            loss = mixing.soft_cross_entropy(logits, targets).mean()
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {
        "loss": loss,
        "top1": topk_correct(logits, labels, 1).mean(),
        "top5": topk_correct(logits, labels, 5).mean(),
    }
    return grads, metrics


def microbatches(batch: dict[str, jax.Array], k: int) -> dict[str, jax.Array]:
    """``batch`` split into ``k`` equal microbatches along a new leading axis ``[k, B / k, ...]``;
    microbatch ``i`` holds rows ``i, i + k, i + 2k, ...``, so that each device's block of a
    batch sharded along its rows holds its share of every microbatch (no data moves)."""
    return jax.tree.map(lambda a: a.reshape(a.shape[0] // k, k, *a.shape[1:]).swapaxes(0, 1), batch)


def _accumulated(
    state: TrainState, step_key: jax.Array, batch: dict[str, jax.Array]
) -> tuple[Any, dict[str, jax.Array]]:
    """Gradients and metrics of the global ``batch`` as the mean over ``state.grad_accum_steps``
    microbatches, scanned one after another (only one microbatch's activations live at a time),
    summed in float32. Microbatch ``i`` draws its augmentation and dropout keys from
    ``fold_in(step_key, i)``. With one microbatch: the whole batch, keys from ``step_key``."""
    k = state.grad_accum_steps
    if k == 1:
        aug_key, dropout_key = jax.random.split(step_key)
        return grads_and_metrics(state, aug_key, dropout_key, batch)

    def body(carry: Any, xs: tuple[jax.Array, dict[str, jax.Array]]) -> tuple[Any, None]:
        i, micro = xs
        aug_key, dropout_key = jax.random.split(jax.random.fold_in(step_key, i))
        grads, metrics = grads_and_metrics(state, aug_key, dropout_key, micro)
        add = lambda total, g: total + g.astype(jnp.float32)  # noqa: E731
        return jax.tree.map(add, carry, (grads, metrics)), None

    micro_KB = microbatches(batch, k)
    first = jax.tree.map(lambda a: a[0], micro_KB)
    shapes = jax.eval_shape(grads_and_metrics, state, step_key, step_key, first)
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, jnp.float32), shapes)
    (grads, metrics), _ = jax.lax.scan(body, zeros, (jnp.arange(k), micro_KB))
    grads = jax.tree.map(lambda total, p: (total / k).astype(p.dtype), grads, state.params)
    return grads, jax.tree.map(lambda total: total / k, metrics)


def _one_train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    """One AdamW step of one model on ``batch = {"image": uint8 or [0, 1] float [B, H, W, C],
    "label": [B]}``.

    The batch is augmented here, on the device (``state.augment_mode``, then the extras of
    ``state.recipe``: :func:`_train_inputs`); metrics are float32 scalars: ``loss``, ``top1``,
    ``top5`` (against the dominant label of a mixed image), ``learning_rate`` and ``grad_norm``
    (before clipping). Frozen parameters (``state.trainable``) get no gradient and no update;
    the others' updates are scaled by their layer's learning-rate factor
    (``hparams["layer_decay"]``). With ``recipe.ema`` the EMA of the parameters follows. With
    ``state.grad_accum_steps`` k > 1 the gradients are those of the batch's k microbatches
    (:func:`_accumulated`): one update per global batch, the learning rate that of the batch.
    """
    step_key = jax.random.fold_in(state.rng, state.step)
    grads, metrics = _accumulated(state, step_key, batch)
    grads = jax.tree.map(lambda g, t: g * t.astype(g.dtype), grads, state.trainable)
    grad_norm = optax.tree.norm(grads)
    grads = adamw.clip_by_global_norm(grads, grad_norm, state.hparams["grad_clip_norm"])
    lr = schedules.learning_rate_at(state.step, state.hparams, state.schedule)
    updates, opt_state = adamw.adamw_update(
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
    metrics = {**metrics, "learning_rate": lr, "grad_norm": grad_norm}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    if state.recipe.ema:
        ema = ema_update(state.ema_params, params, new_state.step, state.hparams["ema_decay"])
        new_state = new_state.replace(ema_params=ema)
    return new_state, jax.tree.map(lambda m: m.astype(jnp.float32), metrics)


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    """One AdamW step on ``batch``; for a population (``state.step`` of shape ``[P]``) one step of
    every member on the same batch, metrics ``[P]``. See :func:`_one_train_step`."""
    if state.step.ndim:
        return jax.vmap(_one_train_step, in_axes=(0, None))(state, batch)
    return _one_train_step(state, batch)


def _logits(state: TrainState, images: jax.Array, tta: bool, tta_shift: int) -> jax.Array:
    """The model's logits for a batch of images; with ``tta`` the scores of the views
    :func:`tta_views` makes (:func:`tta_scores`)."""
    x = _inputs(state, images)
    if not tta:
        return state.model.apply({"params": state.params}, x)
    views_VBHWC = tta_views(x, tta_shift)
    V, B = views_VBHWC.shape[:2]  # every image is scored on its own: one batch of V * B
    logits = state.model.apply({"params": state.params}, views_VBHWC.reshape(V * B, *x.shape[1:]))
    return tta_scores(logits.reshape(V, B, -1))


def _one_eval_step(
    state: TrainState, batch: dict[str, jax.Array], tta: bool = False, tta_shift: int = 0
) -> dict[str, jax.Array]:
    """SUMS over the real rows (``mask`` = 1; no mask: all rows) of ``loss`` (with the training
    label smoothing, as Keras reports it), ``top1``, ``top5``, and their ``count``: add them up
    over batches and divide once, exact whatever the padding. ``tta``: scored on the average of
    the softmaxes of the views :func:`tta_views` makes (:func:`tta_scores`)."""
    logits = _logits(state, batch["image"], tta, tta_shift)
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


@functools.partial(jax.jit, static_argnames=("tta", "tta_shift"))
def eval_step(
    state: TrainState, batch: dict[str, jax.Array], tta: bool = False, tta_shift: int = 0
) -> dict:
    """Sums over the batch's real rows (see :func:`_one_eval_step`); ``[P]`` for a population."""
    one = functools.partial(_one_eval_step, tta=tta, tta_shift=tta_shift)
    if state.step.ndim:
        return jax.vmap(one, in_axes=(0, None))(state, batch)
    return one(state, batch)


@functools.partial(jax.jit, static_argnames=("tta", "tta_shift"))
def predict(
    state: TrainState, images: jax.Array, tta: bool = False, tta_shift: int = 0
) -> jax.Array:
    """Logits for a batch of (uint8 or [0, 1] float) images; with ``tta`` the log of the
    views' average probabilities (as :func:`eval_step` scores them)."""
    return _logits(state, images, tta, tta_shift)


@functools.partial(jax.jit, static_argnames=("kind",))
def features(state: TrainState, images: jax.Array, kind: str = "pooled") -> Any:
    """Features of a batch of images, float32: ``kind="pooled"`` the head's input ``[B, C]``
    (``forward_head(..., pre_logits=True)``), ``"stages"`` the list of every stage's output
    map ``[B, H_s, W_s, C_s]`` (``forward_intermediates``)."""
    variables, x = {"params": state.params}, _inputs(state, images)
    apply = state.model.apply
    if kind == "pooled":
        tokens = apply(variables, x, method="forward_features")
        return apply(variables, tokens, pre_logits=True, method="forward_head")
    if kind == "stages":
        maps = apply(variables, x, intermediates_only=True, method="forward_intermediates")
        return [m.astype(jnp.float32) for m in maps]
    raise ValueError(f"features kind {kind!r}: 'pooled' or 'stages'")


def check_finite(metrics: dict[str, Any], step: int) -> None:
    """Raises TrainingDivergedError (a FloatingPointError) naming the step if a fetched metric
    is NaN or infinite."""
    bad = {k: np.asarray(v).tolist() for k, v in metrics.items() if not np.all(np.isfinite(v))}
    if bad:
        raise TrainingDivergedError(
            f"non-finite metrics at step {step}: {bad}; training stopped, no checkpoint written "
            "for this step (the best and latest checkpoints are untouched). Lower "
            "--config.learning_rate, enable --config.grad_clip_norm, or use float32."
        )
