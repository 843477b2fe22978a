"""Shared fixtures: tiny configs that train in seconds on the CPU."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests run tiny models: LLVM's optimisation passes cost more compile time than they save.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import ml_collections  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo with a copy of shared/ beside it; a developer's checkout has it there too.
SHARED_TFDS = REPO.parent / "shared" / "datasets" / "tfds"


def _demo_config() -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location("demo_config", REPO / "experiments" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def make_tiny_config(**overrides) -> ml_collections.ConfigDict:
    """experiments/demo.py (tiny_test, 16x16, ~25K params, synthetic data: 1080 train / 120 val /
    300 test, batch 64, so 16 steps an epoch), shortened to two quiet epochs."""
    config = _demo_config()
    config.num_epochs = 2
    config.log_every_steps = 4
    config.progress_bar = False
    config.num_sample_images = 6
    for k, v in overrides.items():
        config[k] = v
    return config


@pytest.fixture
def tiny_config() -> ml_collections.ConfigDict:
    return make_tiny_config()
