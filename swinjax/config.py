"""The one config system: flat ``ml_collections`` configs, their defaults and their validation.

Experiment files in ``experiments/`` start from :func:`base_config` and change a few fields;
every key can be overridden on the command line as ``--config.key=value``. Validation happens
before anything is loaded or compiled, and each error names the key and the fix.

Every key is defined once, in :data:`KEYS`: its default, its role and what it means. The role
says what changing the key does to a run, and is the one source of the rules that decide which
keys may differ when a workdir is re-run (:data:`RESUMABLE`) and which keys a sweep ignores when
it fingerprints a point (:data:`SWEEP_IGNORED`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from pathlib import Path
from typing import Any

import ml_collections

from swinjax import data
from swinjax.augment import autoaugment, transforms
from swinjax.data.preprocess import HostPreprocess
from swinjax.errors import ConfigError
from swinjax.models import PRESETS, SwinTransformer, create_model
from swinjax.models.layers.windows import to_pair
from swinjax.optim import param_groups
from swinjax.optim.adamw import validate_optim_config
from swinjax.optim.schedules import SCHEDULES

# Roles. RUN: shapes what the run computes. LENGTH: how long it goes on. OUTPUT: what is logged,
# written or shown, where data are read from, how evaluation is batched. EVAL: only the final
# test evaluation. LAUNCH: how the processes start.
RUN, LENGTH, OUTPUT, EVAL, LAUNCH = "run", "length", "output", "eval", "launch"

# key: (default, role, meaning). Defaults are the Keras seed recipe's where it has one.
KEYS: dict[str, tuple[Any, str, str]] = {
    # ------------------------------------------------------------------------------- data
    "dataset": ("cifar100", RUN, "a tfds name (optionally 'name:version') or 'synthetic'"),
    "data_dir": ("", OUTPUT, "tfds data directory; '': $TFDS_DATA_DIR, else tfds' default"),
    "train_split": ("train[:90%]", RUN, "tfds split string of the training data"),
    "val_split": ("train[90%:]", RUN, "validated after every epoch; '': no validation"),
    "test_split": ("test", EVAL, "evaluated once at the end; '': no test evaluation"),
    "classes": ("", RUN, "keep only these classes, e.g. '5,6,7,8,9' (renumbered 0..k-1)"),
    "batch_size": (128, RUN, "global batch size (split across all devices)"),
    "eval_batch_size": (0, OUTPUT, "evaluation batch size; 0: batch_size"),
    "download": (True, OUTPUT, "download and prepare a tfds dataset missing from data_dir"),
    "input_pipeline": ("auto", RUN, "'memory', 'stream' (tf.data), or 'auto': memory if it fits"),
    "memory_budget_gb": (4.0, RUN, "auto: memory when the decoded split is at most this size"),
    "shuffle_buffer": (16_384, RUN, "stream: shuffle buffer per data shard, in examples"),
    "rrc_scale": ((0.08, 1.0), RUN, "images of varying size: random-resized-crop area range"),
    "rrc_ratio": ((3 / 4, 4 / 3), RUN, "... and its aspect-ratio (width / height) range"),
    "eval_crop_fraction": (0.875, RUN, "... evaluation: center crop / resized shorter side"),
    "resize_method": ("bilinear", RUN, "host and device resizes: 'bilinear' or 'bicubic'"),
    "synthetic_num_classes": (10, RUN, "dataset='synthetic': classes"),
    "synthetic_image_size": (16, RUN, "dataset='synthetic': image height and width"),
    "synthetic_channels": (3, RUN, "dataset='synthetic': channels"),
    "synthetic_train_examples": (1200, RUN, "dataset='synthetic': size of split 'train'"),
    "synthetic_test_examples": (300, RUN, "dataset='synthetic': size of split 'test'"),
    "synthetic_seed": (0, RUN, "dataset='synthetic': its own seed (data fixed across seeds)"),
    # ------------------------------------------------------------------------------ model
    "model": ("keras_example", RUN, "a preset of swinjax.models.PRESETS"),
    "model_kwargs": (
        {},
        RUN,
        "SwinTransformer fields overriding the preset's (None: the preset's)",
    ),
    "dtype": ("float32", RUN, "compute dtype; parameters and optimizer state stay float32"),
    "kernels": ("auto", RUN, "'auto' (cpu on the CPU, reference elsewhere), 'reference', 'cpu'"),
    "remat": ("none", RUN, "recompute activations in the backward pass: 'none', 'blocks', 'full'"),
    # -------------------------------------------------------------------------- optimizer
    "learning_rate": (1e-3, RUN, "peak learning rate"),
    "weight_decay": (1e-4, RUN, "decoupled, multiplied by the learning rate (optax and Keras)"),
    "label_smoothing": (0.1, RUN, "targets one_hot * (1 - s) + s / K"),
    "seed": (0, RUN, "parameters, dropout, augmentation and data order"),
    "schedule": ("constant", RUN, f"learning-rate schedule, one of {SCHEDULES}"),
    "warmup_epochs": (0.0, RUN, "warmup (one_cycle: the rise to the peak) over these epochs"),
    "min_lr": (0.0, RUN, "the learning rate a schedule's decay ends at (not 'constant')"),
    "grad_clip_norm": (0.0, RUN, "> 0: clip gradients to this global norm; 0: no clipping"),
    "decay_all": (False, RUN, "True: decay biases, norms and position tables too (Keras)"),
    "b1": (0.9, RUN, "Adam's beta 1"),
    "b2": (0.999, RUN, "Adam's beta 2"),
    "adam_eps": (1e-8, RUN, "Adam's epsilon (Keras' default is 1e-7)"),
    "adam_eps_keras": (False, RUN, "True: epsilon added to the uncorrected sqrt(v), as Keras"),
    "layer_decay": (1.0, RUN, "layer-wise learning-rate decay (timm's grouping); 1.0: none"),
    "freeze": ("", RUN, "'backbone' (a linear probe) or regexes of parameter paths, by commas"),
    "init_from": ("", RUN, "start from weights: a file, a swinjax workdir, or hf-hub:timm/NAME"),
    "init_head": ("auto", RUN, "with init_from: 'auto' (reset if its shape differs) or 'reset'"),
    "augment": ("crop_flip", RUN, "on the device: 'crop_flip', 'flip', 'seed_exact' or 'none'"),
    "crop_padding": (4, RUN, "crop_flip: zero padding before the random crop, in pixels"),
    "mean": ((), RUN, "per-channel mean on the [0, 1] scale; (): images scaled to [0, 1] only"),
    "std": ((), RUN, "per-channel std, with mean"),
    "normalize": ("", RUN, "'': mean/std as set; 'imagenet'; 'dataset': the dataset's stats"),
    # ----------------------------------- recipe tools (swinjax.training.recipe; all off by default)
    "augment_policy": ("", RUN, "after augment: 'randaugment', 'trivialaugment'; '': none"),
    "randaug_num_ops": (2, RUN, "randaugment: ops per image (N)"),
    "randaug_magnitude": (9.0, RUN, "randaugment: magnitude M on timm's 0..10 scale"),
    "mixup_alpha": (0.0, RUN, "> 0: mixup per image, lam ~ Beta(alpha, alpha); 0: off"),
    "cutmix_alpha": (0.0, RUN, "> 0: CutMix per image, lam ~ Beta(alpha, alpha); 0: off"),
    "mix_switch_prob": (0.5, RUN, "mixup and CutMix both on: probability of CutMix"),
    "mix_prob": (1.0, RUN, "mixup/CutMix on: probability an image is mixed at all"),
    "erase_prob": (0.0, RUN, "> 0: random erasing per image (timm's 'pixel' mode); 0: off"),
    "ema_decay": (0.0, RUN, "> 0: EMA of the params (bias-corrected), validated beside them"),
    "eval_tta": (False, RUN, "True: validation and test average image and mirror softmaxes"),
    "eval_tta_shift": (0, RUN, "> 0, with eval_tta: also both moved by +-this many pixels"),
    # ------------------------------------------------------------------------ run length
    "num_epochs": (40, LENGTH, "epochs; the schedule spans them (re-planned if it changes)"),
    "max_steps": (0, LENGTH, "> 0: stop after this many steps in all (smoke runs)"),
    # --------------------------------------------------------------------- output, launch
    "log_every_steps": (50, OUTPUT, "train-step metrics written every this many steps"),
    "progress_bar": (True, OUTPUT, "a tqdm bar per epoch"),
    "checkpoint_every_epochs": (1, OUTPUT, "checkpoint cadence (also on stop and at the end)"),
    "keep_checkpoints": (2, OUTPUT, "the latest N checkpoints are kept, plus the best"),
    "num_sample_images": (18, OUTPUT, "test images drawn with their predictions at the end"),
    "distributed": (False, LAUNCH, "True: jax.distributed.initialize() first (multi-host)"),
}

# Keys that may differ when a workdir is re-run: they change neither the model nor the data nor
# the recipe. A changed num_epochs re-plans the schedule (swinjax.train says so at start).
RESUMABLE = frozenset(k for k, (_, role, _) in KEYS.items() if role != RUN)
# Keys a sweep never reads, left out of a point's fingerprint (the run length is not: it changes
# the result).
SWEEP_IGNORED = frozenset(k for k, (_, role, _) in KEYS.items() if role in (OUTPUT, EVAL, LAUNCH))


def describe_keys() -> str:
    """Every key of :data:`KEYS` with its default and meaning, one line each: what a program's
    ``--list_keys`` prints."""
    width = max(map(len, KEYS))
    return "\n".join(
        f"{key:<{width}}  {default!r:<14}  {meaning}" for key, (default, _, meaning) in KEYS.items()
    )


def base_config() -> ml_collections.ConfigDict:
    """Every key a run reads, with its default (:data:`KEYS`); ``model_kwargs`` holds every
    ``SwinTransformer`` field, unset (None), so that any can be set on the command line."""
    config = ml_collections.ConfigDict()
    for key, (default, _, _) in KEYS.items():
        config[key] = default
    config.model_kwargs = model_field_placeholders()
    return config


# SwinTransformer fields set by a top-level key of their own, not through model_kwargs.
MODEL_FIELD_KEYS = ("kernels", "remat")


def model_field_placeholders() -> ml_collections.ConfigDict:
    """A typed, unset (None) entry for every field of ``SwinTransformer`` (int and tuple sizes
    take an int on the command line; set a pair in a config file), but :data:`MODEL_FIELD_KEYS`."""
    kinds = (bool, int, float, str, tuple)
    fields = {}
    for f in dataclasses.fields(SwinTransformer):
        if f.name in ("parent", "name", *MODEL_FIELD_KEYS):
            continue
        default = f.default
        kind = next((k for k in kinds if isinstance(default, k)), None)
        if default is None:
            kind = float  # pos_drop_rate: None means drop_rate
        fields[f.name] = ml_collections.config_dict.placeholder(kind or str)  # dtypes: names
    return ml_collections.ConfigDict(fields)


def model_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The ``model_kwargs`` fields that are set (not None), and :data:`MODEL_FIELD_KEYS` (their
    defaults where a config saved before they existed lacks them)."""
    overrides = {k: v for k, v in config.model_kwargs.items() if v is not None}
    return overrides | {k: config.get(k, KEYS[k][0]) for k in MODEL_FIELD_KEYS}


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the key for anything that cannot run."""
    unknown = sorted(set(config) - set(KEYS) - {"sweep"})
    if unknown:
        raise ConfigError(f"config.{unknown[0]}: unknown key; start from base_config()")
    missing = sorted(set(KEYS) - set(config))
    if missing:
        raise ConfigError(f"config lacks {missing}; start from swinjax.config.base_config()")
    if config.model not in PRESETS:
        raise ConfigError(
            f"config.model={config.model!r} is not a preset; choose one of {sorted(PRESETS)}"
        )
    for key in ("batch_size", "log_every_steps", "checkpoint_every_epochs", "keep_checkpoints"):
        if int(config[key]) < 1:
            raise ConfigError(f"config.{key} must be >= 1, got {config[key]}")
    if config.max_steps < 0:
        raise ConfigError(f"config.max_steps must be >= 0 (0: no limit), got {config.max_steps}")
    if config.augment not in transforms.MODES:
        raise ConfigError(f"config.augment={config.augment!r} is not one of {transforms.MODES}")
    if not isinstance(config.distributed, bool):
        raise ConfigError(f"config.distributed must be True or False, got {config.distributed!r}")
    if config.dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"config.dtype={config.dtype!r}: use float32 or bfloat16")
    validate_optim_config(config)
    _validate_recipe_keys(config)
    transforms.normalization(config.normalize, config.dataset, config.mean, config.std)
    _validate_data_keys(config)
    _validate_finetune_keys(config)
    # Construct the model with dummy data shapes: every architecture error surfaces now.
    create_model(config.model, dtype=config.dtype, **model_overrides(config))


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
    if not config.memory_budget_gb >= 0 or config.shuffle_buffer < 1:
        raise ConfigError("config.memory_budget_gb must be >= 0 and config.shuffle_buffer >= 1")
    if config.resize_method not in transforms.RESIZE_METHODS:
        raise ConfigError(
            f"config.resize_method={config.resize_method!r}: use one of {transforms.RESIZE_METHODS}"
        )
    HostPreprocess(  # validates the crop settings
        (1, 1), tuple(config.rrc_scale), tuple(config.rrc_ratio), config.eval_crop_fraction
    )


def build_model(config: ml_collections.ConfigDict, split: Any) -> SwinTransformer:
    """The configured preset, fitted to the dataset's image shape and number of classes;
    ValueError (before anything compiles) for test-time views moved off the image."""
    h, w, c = split.image_shape
    validate_for_images(config, (h, w))
    overrides = model_overrides(config)
    overrides.setdefault("num_classes", split.num_classes)
    overrides.setdefault("img_size", (h, w))
    overrides.setdefault("in_chans", c)
    return create_model(config.model, dtype=config.dtype, **overrides)


def training_steps(config: ml_collections.ConfigDict, split: Any) -> tuple[int, int]:
    """(steps per epoch, total steps) over the training ``split`` under ``config``
    (``max_steps`` > 0 caps the total); a batch larger than the split is an error."""
    steps_per_epoch = split.steps_per_epoch(config.batch_size)
    if steps_per_epoch == 0:
        raise ConfigError(
            f"batch_size {config.batch_size} exceeds the {split.num_examples} training "
            "examples; lower --config.batch_size"
        )
    total_steps = steps_per_epoch * config.num_epochs
    if config.max_steps > 0:
        total_steps = min(total_steps, config.max_steps)
    return steps_per_epoch, total_steps


# ------------------------------------------------------------------------ comparing configs


def flatten(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """The config as one flat JSON-able dict, sub-configs as dotted keys (``model_kwargs.X``)."""
    tree = config if isinstance(config, dict) else json.loads(config.to_json_best_effort())
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in flatten(value).items()})
        else:
            flat[key] = value
    return flat


def diff_configs(
    old: ml_collections.ConfigDict | dict,
    new: ml_collections.ConfigDict | dict,
    ignore: frozenset[str] | set[str] = frozenset(),
) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` for every key that differs, keys in ``ignore``
    (top-level names, or dotted ones) left out; JSON-equal values are equal (tuples == lists)."""
    a, b = flatten(old), flatten(new)
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if k not in ignore and k.split(".")[0] not in ignore and a.get(k) != b.get(k)
    }


def describe_diff(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())


def saved_config(path: Path) -> dict[str, Any] | None:
    """The JSON config saved at ``path``, or None where there is none."""
    return json.loads(path.read_text()) if path.is_file() else None


def _validate_recipe_keys(c: Any) -> None:
    """Raises ValueError naming the key and the fix for any value that cannot train (keys of
    the tools that are on; a missing switch key means off)."""

    def number(key: str, lo: float, hi: float, hi_open: bool, hint: str) -> None:
        v = c[key]
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not lo <= v <= hi or (hi_open and v == hi):
            interval = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
            raise ConfigError(f"config.{key}={v!r}: must be a number in {interval}; {hint}")

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
        raise ConfigError(f"config.eval_tta={c.eval_tta!r}: must be True or False")
    shift = _get(c, "eval_tta_shift")
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ConfigError(f"config.eval_tta_shift={shift!r}: must be a whole number of pixels >= 0")
    if shift and not _get(c, "eval_tta"):
        raise ConfigError(
            f"config.eval_tta_shift={shift} moves the test-time views, but eval_tta is off; "
            "set --config.eval_tta=True, or eval_tta_shift=0"
        )


def validate_for_images(config: ml_collections.ConfigDict, image_hw: tuple[int, int]) -> None:
    """ValueError where the recipe does not fit images of ``image_hw``: test-time views moved
    by ``eval_tta_shift`` pixels must stay inside the image (``training.tta.tta_views``)."""
    shift = int(_get(config, "eval_tta_shift"))
    h, w = image_hw
    if shift >= min(h, w):
        raise ConfigError(
            f"config.eval_tta_shift={shift}: the test-time views must move by less than the "
            f"images' size {h}x{w}; e.g. 1 or 2 pixels for CIFAR"
        )


def input_size(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """The model's input (H, W) under ``config``: what images of varying size are cropped and
    resized to on the host (``data.load_split(..., image_size=...)``)."""
    size = config.model_kwargs.get("img_size") or PRESETS[config.model].get("img_size")
    return to_pair(size or SwinTransformer.img_size)


# What a missing recipe key means (a config saved before the key existed): the tool is off.
_OFF = {"augment_policy": "", "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "erase_prob": 0.0}
_OFF.update(ema_decay=0.0, eval_tta=False, eval_tta_shift=0)


def _get(config: Any, key: str) -> Any:
    return config[key] if key in config else _OFF[key]
