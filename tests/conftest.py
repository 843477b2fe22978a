"""Shared fixtures: tiny configs that train in seconds on the CPU."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests run tiny models: LLVM's optimisation passes cost more compile time than they save.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import ml_collections  # noqa: E402
import pytest  # noqa: E402

from swinjax.config import base_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo with a copy of shared/ beside it; a developer's checkout has it there too.
SHARED_TFDS = REPO.parent / "shared" / "datasets" / "tfds"


def make_tiny_config(**overrides) -> ml_collections.ConfigDict:
    """tiny_test (16x16, ~25K params) on the synthetic dataset: 1080 train / 120 val / 300 test."""
    config = base_config()
    config.model = "tiny_test"
    config.dataset = "synthetic"
    config.num_epochs = 2
    config.batch_size = 64
    config.learning_rate = 2e-3
    config.schedule = "warmup_cosine"
    config.warmup_epochs = 1.0
    config.augment = "crop_flip"
    config.crop_padding = 2
    config.log_every_steps = 4
    config.progress_bar = False
    config.num_sample_images = 6
    for k, v in overrides.items():
        config[k] = v
    return config


@pytest.fixture
def tiny_config() -> ml_collections.ConfigDict:
    return make_tiny_config()
