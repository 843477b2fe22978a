"""Recipe tools beyond the optimizer: which extra augmentations a train step applies, and whether
it keeps an exponential moving average (EMA) of the parameters.

One rule for all of them: whether a tool is ON is static (:class:`Recipe`, a static field of the
train state: a tool that is off is not in the trace at all, so every existing config computes
exactly what it did before the tool existed); its STRENGTH is a float32 array in
``TrainState.hparams`` (present only while the tool is on), so a sweep over strengths compiles
``train_step`` once. A tool is on when its key is set: ``augment_policy`` not "", ``mixup_alpha``
> 0, ``cutmix_alpha`` > 0, ``erase_prob`` > 0, ``ema_decay`` > 0.
The EMA itself is :func:`swinjax.optim.ema.ema_update`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
    """The config's :class:`Recipe` (of a config that :func:`swinjax.config.validate_config`
    accepts)."""
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


def tta(config: Any) -> tuple[bool, int]:
    """``(eval_tta, eval_tta_shift)`` of ``config`` (off where a saved config lacks them)."""
    return bool(_get(config, "eval_tta")), int(_get(config, "eval_tta_shift"))
