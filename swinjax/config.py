"""The one config system: flat ``ml_collections`` configs, their defaults and their validation.

Experiment files in ``experiments/`` start from :func:`base_config` and change a few fields;
every key can be overridden on the command line as ``--config.key=value``. Validation happens
before anything is loaded or compiled, and each error names the key and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections

from swinjax import augment, checkpoint, data, steps
from swinjax.model import PRESETS, SwinTransformer, create_model

# Keys that may differ when re-running a workdir: they change how long or how verbosely the run
# goes on, not what it computes.
RESUMABLE_KEYS = frozenset(
    {
        "num_epochs",
        "max_steps",
        "data_dir",
        "log_every_steps",
        "progress_bar",
        "checkpoint_every_epochs",
        "keep_checkpoints",
        "num_sample_images",
        "eval_batch_size",
        "distributed",
    }
)


def base_config() -> ml_collections.ConfigDict:
    """Every key a run reads, with the Keras seed recipe's values where it has one."""
    config = ml_collections.ConfigDict()
    config.update(data.default_data_config())
    config.update(steps.default_optim_config())
    config.model = "keras_example"  # a preset of swinjax.model.PRESETS
    config.model_kwargs = ml_collections.ConfigDict()  # field overrides of the preset
    config.dtype = "float32"  # compute dtype; parameters and optimizer state stay float32
    config.num_epochs = 40
    config.max_steps = 0  # > 0: stop after this many steps in all (smoke runs)
    config.augment = "crop_flip"  # "crop_flip", "seed_exact" (flip only) or "none"
    config.crop_padding = 4
    config.mean = ()  # per-channel; empty: images scaled to [0, 1] only (the seed)
    config.std = ()
    config.log_every_steps = 50
    config.progress_bar = True
    config.checkpoint_every_epochs = 1
    config.keep_checkpoints = 2  # the latest N, plus the best by validation top-1
    config.num_sample_images = 18
    # True: jax.distributed.initialize() first, for a multi-host run (one process per host; see
    # swinjax.parallel). Single host: False; all local devices are used either way.
    config.distributed = False
    return config


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the key for anything that cannot run."""
    if config.model not in PRESETS:
        raise ValueError(
            f"config.model={config.model!r} is not a preset; choose one of {sorted(PRESETS)}"
        )
    for key in (
        "num_epochs",
        "batch_size",
        "log_every_steps",
        "checkpoint_every_epochs",
        "keep_checkpoints",
    ):
        if int(config[key]) < 1:
            raise ValueError(f"config.{key} must be >= 1, got {config[key]}")
    if config.max_steps < 0:
        raise ValueError(f"config.max_steps must be >= 0 (0: no limit), got {config.max_steps}")
    if config.augment not in augment.MODES:
        raise ValueError(f"config.augment={config.augment!r} is not one of {augment.MODES}")
    if not isinstance(config.get("distributed", False), bool):
        raise ValueError(f"config.distributed must be True or False, got {config.distributed!r}")
    if config.dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"config.dtype={config.dtype!r}: use float32 or bfloat16")
    steps.validate_optim_config(config)
    # Construct the model with dummy data shapes: every architecture error surfaces now.
    create_model(config.model, dtype=config.dtype, **dict(config.model_kwargs))


def build_model(config: ml_collections.ConfigDict, split: Any) -> SwinTransformer:
    """The configured preset, fitted to the dataset's image shape and number of classes."""
    h, w, c = split.image_shape
    overrides = dict(config.model_kwargs)
    overrides.setdefault("num_classes", split.num_classes)
    overrides.setdefault("img_size", (h, w))
    overrides.setdefault("in_chans", c)
    return create_model(config.model, dtype=config.dtype, **overrides)


def training_steps(config: ml_collections.ConfigDict, num_examples: int) -> tuple[int, int]:
    """(steps per epoch, total steps) for ``num_examples`` training examples under ``config``
    (``max_steps`` > 0 caps the total); a batch larger than the split is an error."""
    steps_per_epoch = data.steps_per_epoch(num_examples, config.batch_size)
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {num_examples} training "
            "examples; lower --config.batch_size"
        )
    total_steps = steps_per_epoch * config.num_epochs
    if config.max_steps > 0:
        total_steps = min(total_steps, config.max_steps)
    return steps_per_epoch, total_steps


def check_resumable(workdir: Path, config: ml_collections.ConfigDict) -> None:
    """A workdir holding another run's config is refused (nothing there is overwritten)."""
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"--workdir {workdir} exists and is not a directory; pick another path")
    saved = workdir / checkpoint.CONFIG_FILE
    if not saved.is_file():
        return
    old = json.loads(saved.read_text())
    new = json.loads(config.to_json_best_effort())
    changed = sorted(
        k for k in set(old) | set(new) if k not in RESUMABLE_KEYS and old.get(k) != new.get(k)
    )
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ValueError(
            f"--workdir {workdir} holds a run with a different config ({diffs}); "
            "use a new --workdir, or the same config to resume it"
        )
