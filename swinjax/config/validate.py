"""Validation of a config: every key present and known, every value one that can run, checked
before anything is loaded or compiled; each error names the key and the fix."""

from __future__ import annotations

import math
import numbers
from typing import Any

import ml_collections

from swinjax import data
from swinjax.augment import autoaugment, transforms
from swinjax.config import compilation_cache
from swinjax.config.keys import KEYS, model_overrides
from swinjax.data import screening
from swinjax.data.preprocess import HostPreprocess
from swinjax.errors import ConfigError
from swinjax.models import PRESETS, create_model
from swinjax.models.layers import precision
from swinjax.optim import param_groups
from swinjax.optim.adamw import validate_optim_config


def check_keys(config: ml_collections.ConfigDict) -> None:
    """ConfigError for a key that is not in :data:`KEYS` (but ``sweep``) or one missing."""
    unknown = sorted(set(config) - set(KEYS) - {"sweep"})
    if unknown:
        raise ConfigError(f"config.{unknown[0]}: unknown key; start from base_config()")
    missing = sorted(set(KEYS) - set(config))
    if missing:
        raise ConfigError(f"config lacks {missing}; start from swinjax.config.base_config()")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError (a ValueError) naming the key for anything that cannot run."""
    check_keys(config)
    if config.model not in PRESETS:
        raise ConfigError(
            f"config.model={config.model!r} is not a preset; choose one of {sorted(PRESETS)}"
        )
    for key in ("batch_size", "log_every_steps", "checkpoint_every_epochs", "keep_checkpoints"):
        if int(config[key]) < 1:
            raise ConfigError(f"config.{key} must be >= 1, got {config[key]}")
    _validate_grad_accum(config)
    if config.max_steps < 0:
        raise ConfigError(f"config.max_steps must be >= 0 (0: no limit), got {config.max_steps}")
    if config.augment not in transforms.MODES:
        raise ConfigError(f"config.augment={config.augment!r} is not one of {transforms.MODES}")
    if not isinstance(config.distributed, bool):
        raise ConfigError(f"config.distributed must be True or False, got {config.distributed!r}")
    precision.check_compute_dtype(config.dtype)
    if config.sharding not in ("replicated", "fsdp"):
        raise ConfigError(
            f"config.sharding={config.sharding!r}: use 'replicated' (a copy of the state on every"
            " device) or 'fsdp' (parameters and optimizer state split over the devices)"
        )
    if config.sharding == "fsdp" and config.distributed:
        raise ConfigError(
            "config.sharding='fsdp' runs in one process only for now; with distributed=True use"
            " --config.sharding=replicated"
        )
    compilation_cache.cache_dir(config.compilation_cache)  # a file where a folder belongs
    validate_optim_config(config)
    _validate_recipe_keys(config)
    transforms.normalization(config.normalize, config.dataset, config.mean, config.std)
    _validate_data_keys(config)
    _validate_finetune_keys(config)
    # Construct the model with dummy data shapes: every architecture error surfaces now.
    create_model(config.model, dtype=config.dtype, **model_overrides(config))


def _validate_grad_accum(config: ml_collections.ConfigDict) -> None:
    k = config.grad_accum_steps
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"config.grad_accum_steps must be an int >= 1 (1: off), got {k!r}")
    if config.batch_size % k:
        raise ConfigError(
            f"config.batch_size={config.batch_size} is not divisible by config.grad_accum_steps="
            f"{k} (the microbatches are equal); use a batch size that is a multiple of {k}"
        )


def _validate_finetune_keys(config: ml_collections.ConfigDict) -> None:
    data.parse_classes(config.classes)
    param_groups.parse_freeze(config.freeze)
    if config.init_head not in ("auto", "reset"):
        raise ConfigError(f"config.init_head={config.init_head!r}: use 'auto' or 'reset'")
    if config.init_head == "reset" and not config.init_from:
        raise ConfigError("config.init_head='reset' needs config.init_from (weights to start from)")


def _validate_data_keys(config: ml_collections.ConfigDict) -> None:
    if config.input_pipeline not in ("auto", "memory", "stream"):
        raise ConfigError(
            f"config.input_pipeline={config.input_pipeline!r}: use 'auto', 'memory' or 'stream'"
        )
    screening.check_policy(config.bad_images)
    if not config.memory_budget_gb >= 0 or config.shuffle_buffer < 1:
        raise ConfigError("config.memory_budget_gb must be >= 0 and config.shuffle_buffer >= 1")
    if config.resize_method not in transforms.RESIZE_METHODS:
        raise ConfigError(
            f"config.resize_method={config.resize_method!r}: use one of {transforms.RESIZE_METHODS}"
        )
    HostPreprocess(  # validates the crop settings
        (1, 1), tuple(config.rrc_scale), tuple(config.rrc_ratio), config.eval_crop_fraction
    )


def _validate_recipe_keys(c: Any) -> None:
    """Raises ConfigError naming the key and the fix for any value of the recipe tools
    (``swinjax.training.recipe``) that cannot train (a tool's keys only where it is on)."""

    def number(key: str, lo: float, hi: float, hi_open: bool, hint: str) -> None:
        v = c[key]
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not lo <= v <= hi or (hi_open and v == hi):
            interval = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
            raise ConfigError(f"config.{key}={v!r}: must be a number in {interval}; {hint}")

    policy = c.augment_policy
    autoaugment.validate_policy(policy, c.randaug_num_ops if policy else 2)
    if policy == "randaugment":
        number("randaug_magnitude", 0.0, autoaugment.MAGNITUDE_MAX, False, "timm's M, e.g. 9")
    for key in ("mixup_alpha", "cutmix_alpha"):
        number(key, 0.0, math.inf, True, "0: off; timm's Swin recipe: 0.8 and 1.0")
    if c.mixup_alpha > 0 or c.cutmix_alpha > 0:
        number("mix_prob", 0.0, 1.0, False, "the probability an image is mixed")
        number("mix_switch_prob", 0.0, 1.0, False, "the probability of cutmix over mixup")
    number("erase_prob", 0.0, 1.0, False, "0: off; timm's Swin recipe: 0.25")
    number("ema_decay", 0.0, 1.0, True, "0: off; e.g. 0.999 (about the last 1000 steps)")
    if not isinstance(c.eval_tta, bool):
        raise ConfigError(f"config.eval_tta={c.eval_tta!r}: must be True or False")
    shift = c.eval_tta_shift
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ConfigError(f"config.eval_tta_shift={shift!r}: must be a whole number of pixels >= 0")
    if shift and not c.eval_tta:
        raise ConfigError(
            f"config.eval_tta_shift={shift} moves the test-time views, but eval_tta is off; "
            "set --config.eval_tta=True, or eval_tta_shift=0"
        )


def validate_for_images(config: ml_collections.ConfigDict, image_hw: tuple[int, int]) -> None:
    """ConfigError where the recipe does not fit images of ``image_hw``: test-time views moved
    by ``eval_tta_shift`` pixels must stay inside the image (``training.tta.tta_views``)."""
    shift = int(config.eval_tta_shift)
    h, w = image_hw
    if shift >= min(h, w):
        raise ConfigError(
            f"config.eval_tta_shift={shift}: the test-time views must move by less than the "
            f"images' size {h}x{w}; e.g. 1 or 2 pixels for CIFAR"
        )
