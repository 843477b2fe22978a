"""Recipe tools beyond the optimizer: which extra augmentations a train step applies, and whether
it keeps an exponential moving average (EMA) of the parameters.

One rule for all of them: whether a tool is ON is static (:class:`Recipe`, a static field of the
train state: a tool that is off is not in the trace at all, so every existing config computes
exactly what it did before the tool existed); its STRENGTH is a float32 array in
``TrainState.hparams`` (present only while the tool is on), so a sweep over strengths compiles
``train_step`` once. A tool is on when its key is set: ``augment_policy`` not "", ``mixup_alpha``
> 0, ``cutmix_alpha`` > 0, ``erase_prob`` > 0, ``ema_decay`` > 0. Which keys are a tool's
strengths says the ``hparam`` column of ``swinjax.config.KEYS`` (the :class:`Recipe` flag that
must be on). The EMA itself is :func:`swinjax.optim.ema.ema_update`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from swinjax.config import TOOL_HPARAM_KEYS


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

    @property
    def randaugment(self) -> bool:
        return self.policy == "randaugment"


def from_config(config: Any) -> Recipe:
    """The config's :class:`Recipe` (of a config that :func:`swinjax.config.validate_config`
    accepts)."""
    policy = config.augment_policy
    return Recipe(
        policy=policy,
        num_ops=int(config.randaug_num_ops) if policy else 2,
        mixup=config.mixup_alpha > 0,
        cutmix=config.cutmix_alpha > 0,
        erase=config.erase_prob > 0,
        ema=config.ema_decay > 0,
    )


def hparams(config: Any, recipe: Recipe) -> dict[str, float]:
    """The array hyperparameters of the tools that are on: the keys of
    ``swinjax.config.TOOL_HPARAM_KEYS`` whose :class:`Recipe` flag is set."""
    return {k: float(config[k]) for k, flag in TOOL_HPARAM_KEYS.items() if getattr(recipe, flag)}


def tta(config: Any) -> tuple[bool, int]:
    """``(eval_tta, eval_tta_shift)`` of ``config``."""
    return bool(config.eval_tta), int(config.eval_tta_shift)
