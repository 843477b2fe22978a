"""Every config file in experiments/ loads and validates (no data, no compile)."""

from __future__ import annotations

import importlib.util

import pytest

from swinjax.config import validate_config
from swinjax.sweeps import space
from tests.conftest import REPO

FILES = sorted((REPO / "experiments").glob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_experiment_config_validates(path) -> None:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    assert module.__doc__ and "python -m swinjax." in module.__doc__  # says how to run it
    if "sweep" in config:
        base, sweep = space.split_config(config)
        space.validate_sweep(base, sweep)
    else:
        validate_config(config)
