"""Recipe tools beyond the optimizer: which extra augmentations a train step applies, and the
exponential moving average (EMA) of the parameters.

One rule for all of them: whether a tool is ON is static (:class:`Recipe`, a static field of the
train state: a tool that is off is not in the trace at all, so every existing config computes
exactly what it did before the tool existed); its STRENGTH is a float32 array in
``TrainState.hparams`` (present only while the tool is on), so a sweep over strengths compiles
``train_step`` once. A tool is on when its key is set: ``augment_policy`` not "", ``mixup_alpha``
> 0, ``cutmix_alpha`` > 0, ``erase_prob`` > 0, ``ema_decay`` > 0.

EMA. After optimizer step ``t`` (1-based), ``ema = d_t ema + (1 - d_t) params`` with the
bias-corrected decay ``d_t = d (1 - d^(t-1)) / (1 - d^t)``: the EMA is the average of the
parameters after steps 1..t with weights proportional to ``d^(t-k)``, exactly, from the first
step on (``d_1 = 0``: ema = params). Chosen over timm's ModelEmaV3 warmup (``1 - (1 + t/gamma)
^-power``) because it has no hyperparameter of its own, never weighs the random initialization
(or an ``init_from`` start) at all, and is a pure function of the step already in the state.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from swinjax import autoaugment

# Config keys read here (defined, with their defaults, in ``swinjax.config.KEYS``).
RECIPE_KEYS = (
    "augment_policy",
    "randaug_num_ops",
    "randaug_magnitude",
    "mixup_alpha",
    "cutmix_alpha",
    "mix_switch_prob",
    "mix_prob",
    "erase_prob",
    "ema_decay",
    "eval_tta",
    "eval_tta_shift",
)
# What a missing key means (a config saved before the key existed): the tool is off.
_OFF = {"augment_policy": "", "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "erase_prob": 0.0}
_OFF.update(ema_decay=0.0, eval_tta=False, eval_tta_shift=0)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The static part: which tools are in the train step's trace."""

    policy: str = ""  # autoaugment.POLICIES
    num_ops: int = 2  # randaugment's N
    mixup: bool = False
    cutmix: bool = False
    erase: bool = False
    ema: bool = False

    @property
    def mixing(self) -> bool:
        return self.mixup or self.cutmix


def _get(config: Any, key: str) -> Any:
    return config[key] if key in config else _OFF[key]


def from_config(config: Any) -> Recipe:
    """The config's :class:`Recipe` (validated first)."""
    validate_recipe_config(config)
    policy = _get(config, "augment_policy")
    return Recipe(
        policy=policy,
        num_ops=int(config.randaug_num_ops) if policy else 2,
        mixup=_get(config, "mixup_alpha") > 0,
        cutmix=_get(config, "cutmix_alpha") > 0,
        erase=_get(config, "erase_prob") > 0,
        ema=_get(config, "ema_decay") > 0,
    )


def hparams(config: Any, recipe: Recipe) -> dict[str, float]:
    """The array hyperparameters of the tools that are on."""
    out: dict[str, float] = {}
    if recipe.policy == "randaugment":
        out["randaug_magnitude"] = config.randaug_magnitude
    if recipe.mixup:
        out["mixup_alpha"] = config.mixup_alpha
    if recipe.cutmix:
        out["cutmix_alpha"] = config.cutmix_alpha
    if recipe.mixing:
        out.update(mix_prob=config.mix_prob, mix_switch_prob=config.mix_switch_prob)
    if recipe.erase:
        out["erase_prob"] = config.erase_prob
    if recipe.ema:
        out["ema_decay"] = config.ema_decay
    return {k: float(v) for k, v in out.items()}


def validate_recipe_config(c: Any) -> None:
    """Raises ValueError naming the key and the fix for any value that cannot train (keys of
    the tools that are on; a missing switch key means off)."""

    def number(key: str, lo: float, hi: float, hi_open: bool, hint: str) -> None:
        v = c[key]
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not lo <= v <= hi or (hi_open and v == hi):
            interval = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
            raise ValueError(f"config.{key}={v!r}: must be a number in {interval}; {hint}")

    policy = _get(c, "augment_policy")
    autoaugment.validate_policy(policy, c.randaug_num_ops if policy else 2)
    if policy == "randaugment":
        number("randaug_magnitude", 0.0, autoaugment.MAGNITUDE_MAX, False, "timm's M, e.g. 9")
    for key in ("mixup_alpha", "cutmix_alpha"):
        if key in c:
            number(key, 0.0, math.inf, True, "0: off; timm's Swin recipe: 0.8 and 1.0")
    if _get(c, "mixup_alpha") > 0 or _get(c, "cutmix_alpha") > 0:
        number("mix_prob", 0.0, 1.0, False, "the probability an image is mixed")
        number("mix_switch_prob", 0.0, 1.0, False, "the probability of cutmix over mixup")
    if "erase_prob" in c:
        number("erase_prob", 0.0, 1.0, False, "0: off; timm's Swin recipe: 0.25")
    if "ema_decay" in c:
        number("ema_decay", 0.0, 1.0, True, "0: off; e.g. 0.999 (about the last 1000 steps)")
    if not isinstance(_get(c, "eval_tta"), bool):
        raise ValueError(f"config.eval_tta={c.eval_tta!r}: must be True or False")
    shift = _get(c, "eval_tta_shift")
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(f"config.eval_tta_shift={shift!r}: must be a whole number of pixels >= 0")
    if shift and not _get(c, "eval_tta"):
        raise ValueError(
            f"config.eval_tta_shift={shift} moves the test-time views, but eval_tta is off; "
            "set --config.eval_tta=True, or eval_tta_shift=0"
        )


def validate_for_images(config: Any, image_hw: tuple[int, int]) -> None:
    """ValueError where the recipe does not fit images of ``image_hw``: test-time views moved
    by ``eval_tta_shift`` pixels must stay inside the image (``steps.tta_views``)."""
    shift = tta(config)[1]
    h, w = image_hw
    if shift >= min(h, w):
        raise ValueError(
            f"config.eval_tta_shift={shift}: the test-time views must move by less than the "
            f"images' size {h}x{w}; e.g. 1 or 2 pixels for CIFAR"
        )


def tta(config: Any) -> tuple[bool, int]:
    """``(eval_tta, eval_tta_shift)`` of ``config`` (off where a saved config lacks them)."""
    return bool(_get(config, "eval_tta")), int(_get(config, "eval_tta_shift"))


def ema_update(ema: Any, params: Any, count: jax.Array, decay: jax.Array) -> Any:
    """The bias-corrected EMA after optimizer step ``count`` (1-based; see the module
    docstring): ``d_t ema + (1 - d_t) params``, ``d_t = d (1 - d^(t-1)) / (1 - d^t)``."""
    t = jnp.asarray(count).astype(jnp.float32)
    log_d = jnp.log(jnp.maximum(decay, 1e-30))
    # 1 - d^t as -expm1(t log d): accurate where d is close to 1.
    d_t = jnp.where(decay > 0, decay * jnp.expm1((t - 1) * log_d) / jnp.expm1(t * log_d), 0.0)
    return jax.tree.map(lambda e, p: (d_t * e + (1.0 - d_t) * p).astype(e.dtype), ema, params)
