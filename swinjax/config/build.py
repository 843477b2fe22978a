"""What a config builds: the model for a split's images, the step counts of a run, the model's
input size."""

from __future__ import annotations

from typing import Any

import ml_collections

from swinjax.config.keys import model_overrides
from swinjax.config.validate import validate_for_images
from swinjax.errors import ConfigError
from swinjax.models import PRESETS, SwinTransformer, create_model
from swinjax.models.layers.windows import to_pair


def build_model(config: ml_collections.ConfigDict, split: Any) -> SwinTransformer:
    """The configured preset, fitted to the dataset's image shape and number of classes;
    ConfigError (before anything compiles) for test-time views moved off the image."""
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


def input_size(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """The model's input (H, W) under ``config``: what images of varying size are cropped and
    resized to on the host (``data.load_split(..., image_size=...)``)."""
    size = config.model_kwargs.get("img_size") or PRESETS[config.model].get("img_size")
    return to_pair(size or SwinTransformer.img_size)
