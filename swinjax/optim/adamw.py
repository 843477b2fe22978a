"""The optimizer recipe: the validation of its config keys (defined in ``swinjax.config.KEYS``,
section ``optim``), AdamW with array hyperparameters and the weight-decay mask.

Everything numeric is a float32 array at run time (``TrainState.hparams``, written into the
optimizer state by :func:`adamw_update` before each update), so changing it does not retrace;
the only static choice is the decay mask (``decay_all``). :func:`make_optimizer` returns the same
transformation object for every config that shares it, which keeps ``train_step``'s jit cache at
one entry across a sweep.

AdamW is ``optax.adamw`` under ``optax.inject_hyperparams``: decay is decoupled and multiplied
by the learning rate, ``p -= lr * (adam_update + wd * p)``, exactly Keras' AdamW (which does
``p -= lr * wd * p`` and then the Adam step from the same gradient). Keras adds its epsilon to
the *uncorrected* ``sqrt(v)`` (Adam's "epsilon hat"), optax to the bias-corrected one; with
``adam_eps_keras=True`` optax is fed ``adam_eps / sqrt(1 - b2**t)``, which is Keras' update
exactly. Clipping (``grad_clip_norm`` > 0) is optax's ``clip_by_global_norm`` with an array
threshold.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util

from swinjax.errors import ConfigError
from swinjax.optim.schedules import SCHEDULES

# Adam's first moment may be kept in bfloat16 (big_vision's ``mu_dtype``); the second moment
# and the parameters stay float32 (the precision policy: swinjax.models.layers.precision).
MU_DTYPES = ("float32", "bfloat16")

# ----------------------------------------------------------------------------------- config


def validate_optim_config(c: ml_collections.ConfigDict) -> None:
    """Raises ConfigError (a ValueError) naming the key and the fix for any optimizer value
    that cannot train, in a config that has every key (``swinjax.config.check_keys``)."""

    def bad(key: str, rule: str) -> ConfigError:
        return ConfigError(f"config.{key}={c[key]!r}: {rule}")

    numeric = (
        "learning_rate",
        "weight_decay",
        "label_smoothing",
        "warmup_epochs",
        "min_lr",
        "layer_decay",
    )
    for key in (*numeric, "grad_clip_norm", "b1", "b2", "adam_eps"):
        v = c[key]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise bad(key, f"must be a finite number; set --config.{key}=<number>")
    for key in ("seed", "num_epochs"):
        if isinstance(c[key], bool) or not isinstance(c[key], numbers.Integral):
            raise bad(key, f"must be an integer; set --config.{key}=<int>")
    for key in ("decay_all", "adam_eps_keras"):
        if not isinstance(c[key], bool):
            raise bad(key, f"must be True or False; set --config.{key}=True or False")

    if not c.learning_rate > 0:
        raise bad("learning_rate", "must be > 0; the Keras seed uses 1e-3")
    if not c.weight_decay >= 0:
        raise bad("weight_decay", "must be >= 0; use 0 for no weight decay")
    if not 0 <= c.label_smoothing < 1:
        raise bad("label_smoothing", "must be in [0, 1); use 0 for plain cross-entropy")
    if c.num_epochs < 1:
        raise bad("num_epochs", "must be >= 1")
    if c.schedule not in SCHEDULES:
        raise bad("schedule", f"must be one of {SCHEDULES}")
    if c.schedule == "constant" and (c.warmup_epochs != 0 or c.min_lr != 0):
        key = "warmup_epochs" if c.warmup_epochs != 0 else "min_lr"
        raise bad(
            key, f"has no effect with schedule='constant'; set schedule='warmup_cosine' or {key}=0"
        )
    if not 0 <= c.warmup_epochs <= c.num_epochs:
        raise bad("warmup_epochs", f"must be in [0, num_epochs={c.num_epochs}]")
    if not 0 <= c.min_lr <= c.learning_rate:
        raise bad("min_lr", f"must be in [0, learning_rate={c.learning_rate}]")
    if not c.grad_clip_norm >= 0:
        raise bad("grad_clip_norm", "must be >= 0; use 0 for no clipping")
    for key in ("b1", "b2"):
        if not 0 <= c[key] < 1:
            raise bad(key, "must be in [0, 1); Adam's defaults are b1=0.9, b2=0.999")
    if not 0 < c.layer_decay <= 1:
        raise bad("layer_decay", "must be in (0, 1]; 1.0: no decay, 0.75: timm's fine-tuning")
    if not c.adam_eps > 0:
        raise bad("adam_eps", "must be > 0; optax's default is 1e-8, Keras' 1e-7")
    if c.adam_mu_dtype not in MU_DTYPES:
        raise bad("adam_mu_dtype", f"must be one of {MU_DTYPES}; float32 unless memory is short")


# -------------------------------------------------------------------------------- optimizer


def decay_mask(params: Any, decay_all: bool = False) -> Any:
    """True for the leaves weight decay applies to: dense and conv kernels (or every leaf).

    Biases, LayerNorm scales and biases, ``absolute_pos_embed`` and every
    ``relative_position_bias_table`` are spared; so are Swin V2's ``logit_scale``, ``q_bias``,
    ``v_bias`` and its continuous-position-bias MLPs (``cpb_mlp_*``, kernels included: timm's
    ``SwinTransformerV2.no_weight_decay``).
    """
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: decay_all or _decays(k) for k in flat})


def _decays(path: tuple[str, ...]) -> bool:
    return path[-1] == "kernel" and not any(part.startswith("cpb_mlp") for part in path)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW whose learning rate, weight decay, betas and epsilon are injected state.

    Its static choices are the decay mask and the first moment's dtype (``adam_mu_dtype``):
    every state of a sweep that keeps them shares one transformation object, so ``train_step``
    compiles once.
    """
    return _optimizer(bool(config.decay_all), mu_dtype=str(config.adam_mu_dtype))


@functools.cache
def _optimizer(decay_all: bool, mu_dtype: str = "float32") -> optax.GradientTransformation:
    mask = None if decay_all else decay_mask

    def adamw(learning_rate, weight_decay, b1, b2, eps) -> optax.GradientTransformation:
        return optax.adamw(
            learning_rate,
            b1=b1,
            b2=b2,
            eps=eps,
            weight_decay=weight_decay,
            mask=mask,
            mu_dtype=jnp.dtype(mu_dtype),
        )

    # Placeholders: train_step overwrites every hyperparameter before each update.
    return optax.inject_hyperparams(adamw, hyperparam_dtype=jnp.float32)(
        learning_rate=0.0, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8
    )


def clip_by_global_norm(grads: Any, g_norm: jax.Array, max_norm: jax.Array) -> Any:
    """optax.clip_by_global_norm with an array threshold; ``max_norm`` <= 0 leaves ``grads``."""
    clip = (max_norm > 0) & (g_norm >= max_norm)
    return jax.tree.map(
        lambda g: jnp.where(clip, (g / g_norm.astype(g.dtype)) * max_norm, g), grads
    )


def adamw_update(
    tx: optax.GradientTransformation,
    opt_state: Any,
    params: Any,
    grads: Any,
    *,
    step: jax.Array,
    learning_rate: jax.Array,
    hparams: dict[str, jax.Array],
) -> tuple[Any, Any]:
    """``tx.update`` for optimizer step ``step`` (0-based), with every injected hyperparameter
    (``learning_rate``, already scheduled, and ``hparams``' weight decay, betas and epsilon)
    written into ``opt_state`` first. Returns ``(updates, opt_state)``."""
    hp = hparams
    t = (step + 1).astype(jnp.float32)  # Adam's 1-based count after this update
    eps_hat = hp["adam_eps"] / jnp.sqrt(1.0 - hp["b2"] ** t)
    eps = jnp.where(hp["adam_eps_keras"] > 0, eps_hat, hp["adam_eps"])
    injected = {
        "learning_rate": learning_rate,
        "weight_decay": hp["weight_decay"],
        "b1": hp["b1"],
        "b2": hp["b2"],
        "eps": eps,
    }
    opt_state = opt_state._replace(
        hyperparams={k: jnp.asarray(v, jnp.float32) for k, v in injected.items()}
    )
    return tx.update(grads, opt_state, params)
