"""The train state: everything that changes during training, plus the static recipe that
shapes the trace, and its construction from a config.

Everything a sweep varies (peak and final learning rate, schedule lengths, weight decay, label
smoothing, Adam's betas and epsilon, the clipping norm, the strengths of the recipe tools, the
seed) lives in the state as float32 arrays (``state.hparams``) or a PRNG key (``state.rng``).
What selects code is static (``pytree_node=False``): the model, the optax transformation (its
only choice is the decay mask), the schedule's shape, the augmentation and which recipe tools
are on (``state.recipe``, :mod:`swinjax.training.recipe`: RandAugment or TrivialAugment, mixup /
CutMix, random erasing, the parameters' EMA in ``state.ema_params``).
"""

from __future__ import annotations

import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from swinjax.augment import transforms
from swinjax.config import HPARAM_KEYS, check_keys
from swinjax.optim import param_groups
from swinjax.optim.adamw import make_optimizer, validate_optim_config
from swinjax.training import recipe as recipe_lib


class TrainState(struct.PyTreeNode):
    """Everything that changes during training, plus the static recipe that shapes the trace."""

    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array  # typed PRNG key; step s uses fold_in(rng, s)
    hparams: dict[str, jax.Array]  # float32 scalars a sweep may vary (_hparams)
    trainable: Any  # per parameter, a float32 scalar: 1.0 trains, 0.0 frozen (param_groups)
    model: nn.Module = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    ema_params: Any = None  # the parameters' EMA where recipe.ema (swinjax.training.recipe)
    schedule: str = struct.field(pytree_node=False, default="constant")
    augment_mode: str = struct.field(pytree_node=False, default="none")
    crop_padding: int = struct.field(pytree_node=False, default=4)
    mean: tuple[float, ...] = struct.field(pytree_node=False, default=())
    std: tuple[float, ...] = struct.field(pytree_node=False, default=())
    resize_method: str = struct.field(pytree_node=False, default="bilinear")
    recipe: recipe_lib.Recipe = struct.field(pytree_node=False, default=recipe_lib.Recipe())
    grad_accum_steps: int = struct.field(pytree_node=False, default=1)  # microbatches per step


def image_shape(model: nn.Module) -> tuple[int, int, int]:
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
    """``state.hparams``: the float32 scalars of the keys the table marks (``swinjax.config``:
    :data:`HPARAM_KEYS` always, the recipe tools' strengths while the tool is on), and the
    schedule's lengths in steps: ``warmup_steps`` (of ``warmup_epochs``) and ``total_steps``
    (of ``num_epochs``)."""
    hparams = {k: config[k] for k in HPARAM_KEYS} | recipe_lib.hparams(config, recipe)
    hparams["warmup_steps"] = round(config.warmup_epochs * steps_per_epoch)
    hparams["total_steps"] = config.num_epochs * steps_per_epoch
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
    check_keys(config)
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

    mean, std = transforms.normalization(config.normalize, config.dataset, config.mean, config.std)
    tx = make_optimizer(config)
    shape = image_shape(model)
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
        augment_mode=config.augment,
        crop_padding=config.crop_padding,
        mean=mean,
        std=std,
        resize_method=config.resize_method,
        recipe=recipe,
        grad_accum_steps=int(config.grad_accum_steps),
    )
