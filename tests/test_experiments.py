"""Every config file in experiments/, and every variant of one (``get_config(VARIANT)``, on the
command line ``--config experiments/FILE.py:VARIANT``), loads and validates (no data, no
compile); an experiment never loads another experiment's file."""

from __future__ import annotations

import importlib.util

import pytest

from swinjax.config import validate_config
from swinjax.errors import ConfigError
from swinjax.sweeps import space
from tests.conftest import REPO

FILES = sorted((REPO / "experiments").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _variants():
    """(file, variant) for every file (variant None: ``get_config()``) and every name in its
    ``VARIANTS``."""
    cases = []
    for path in FILES:
        cases.append((path, None))
        cases += [(path, name) for name in getattr(_load(path), "VARIANTS", {}) if name]
    return cases


CASES = _variants()


@pytest.mark.parametrize(
    ("path", "variant"), CASES, ids=[f"{p.stem}:{v}" if v else p.stem for p, v in CASES]
)
def test_experiment_config_validates(path, variant) -> None:
    module = _load(path)
    config = module.get_config() if variant is None else module.get_config(variant)
    assert module.__doc__ and "python -m swinjax." in module.__doc__  # says how to run it
    if variant:
        assert f"{path.name}:{variant}" in module.__doc__  # ... and how to run the variant
    if "sweep" in config:
        base, sweep = space.split_config(config)
        space.validate_sweep(base, sweep)
    else:
        validate_config(config)


def test_variants_exist() -> None:
    assert ("cifar_strong", "sweep") in {(p.stem, v) for p, v in CASES}
    with pytest.raises(ConfigError, match=r"cifar_strong.py:nope: no such variant; use one of"):
        _load(REPO / "experiments" / "cifar_strong.py").get_config("nope")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_experiment_does_not_load_another(path) -> None:
    text = path.read_text()  # variants are get_config(VARIANT), not another file loaded
    for loader in ("importlib", "spec_from_file_location", "import experiments", "exec("):
        assert loader not in text, f"{path.name} loads code with {loader!r}"
