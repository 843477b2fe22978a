"""Every config file in experiments/, and every variant of one (``get_config(VARIANT)``, on the
command line ``--config experiments/FILE.py:VARIANT``), loads and validates (no data, no
compile); an experiment never loads another experiment's file. The Swin V2 fine-tuning recipe
also trains a step at a tiny size, from a timm-layout file (its hub weights need the network)."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
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


def test_swinv2_finetuning_recipe_trains_a_step_at_a_tiny_size(tmp_path, mock_tfds, capsys) -> None:
    """experiments/finetune_swinv2_t_cifar100.py:window8to16 as it is (window 16 over window-8
    weights, 1000 -> 100 classes, bfloat16, layer decay, resize on the device), with Swin V2-T's
    widths and depths shrunk and 64x64 images: a random timm-layout V2 file loads, its head is
    re-initialised and one step trains."""
    from safetensors.numpy import save_file

    from swinjax.models import create_model
    from swinjax.training import trainer
    from swinjax.weights import params_to_timm

    config = _load(REPO / "experiments" / "finetune_swinv2_t_cifar100.py").get_config("window8to16")
    tiny = dict(embed_dim=12, depths=(1, 1, 1, 1), img_size=64)  # stage maps 16, 8, 4, 2
    source = create_model(config.model, **tiny)  # the window-8 pretrained model, 1000 classes
    params = jax.jit(source.init)(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    weights = tmp_path / "swinv2_window8.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in params_to_timm(params).items()}, str(weights))
    for key, value in tiny.items():
        config.model_kwargs[key] = value
    config.init_from = str(weights)
    config.update(batch_size=4, max_steps=1, val_split="", test_split="", progress_bar=False)
    with mock_tfds("cifar100", num_examples=8) as data_dir:
        config.update(data_dir=data_dir, input_pipeline="memory")
        result = trainer.train_and_evaluate(config, tmp_path / "run")
    assert result["step"] == 1 and result["stopped_by"] == "max_steps"
    out = capsys.readouterr().out
    assert "0 resized, 2 initialised" in out  # the new head's kernel and bias: nothing else
    assert "head re-initialised (1000 -> 100 classes)" in out
    assert "windows (16, 8, 4, 2), scaled by (8, 8, 8, 8)" in out  # clamped windows: as timm's
