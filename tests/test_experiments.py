"""Every config file in experiments/, and every variant of one (``get_config(VARIANT)``, on the
command line ``--config experiments/FILE.py:VARIANT``), loads and validates (no data, no
compile); an experiment never loads another experiment's file. The Swin-B fine-tuning recipe's
train step also runs once, shrunk to a tiny model on synthetic data; the Swin V2 fine-tuning
recipe trains a step at a tiny size, from a timm-layout file (its hub weights need the network)."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import data
from swinjax.config import validate_config
from swinjax.errors import ConfigError
from swinjax.sweeps import space
from swinjax.training import parallel, setup, steps
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


# finetune_swin_b_384 shrunk (its compile is most of the test's time): Swin-B's first two stages
# at width 16 (head size 4), 96x96 inputs resized from 16x16 synthetic images (window 12 over
# 24x24 tokens, shifted, in stage 1), 2 microbatches of 8 rather than 8 of 64, no pretrained
# weights.
TINY_SWIN_B = dict(
    init_from="",
    dataset="synthetic",
    synthetic_train_examples=64,
    val_split="",
    test_split="",
    batch_size=16,
    grad_accum_steps=2,
    progress_bar=False,
)
TINY_SWIN_B_MODEL = dict(embed_dim=16, depths=(2, 1), num_heads=(4, 8), img_size=96, num_classes=10)


@pytest.mark.slow  # ~20 s: compiles a whole recipe's step
def test_finetune_swin_b_384_step_runs_at_a_tiny_size() -> None:
    config = _load(REPO / "experiments" / "finetune_swin_b_384.py").get_config()
    assert config.init_from.startswith("hf-hub:timm/swin_base_patch4_window7_224")
    assert (config.batch_size, config.grad_accum_steps, config.learning_rate) == (512, 8, 2e-5)
    assert config.ema_decay > 0 and config.layer_decay == 0.9 and config.dtype == "bfloat16"
    config.update(TINY_SWIN_B)
    config.model_kwargs.update(TINY_SWIN_B_MODEL)
    fsdp = config.copy_and_resolve_references()
    fsdp.sharding = "fsdp"  # the command line's option
    validate_config(fsdp)
    run = setup.setup_run(config)
    state = run.take_state()
    assert state.grad_accum_steps == 2 and state.model.window_size == 12
    assert state.recipe.ema and state.recipe.mixing and state.recipe.policy == "randaugment"
    batch = next(data.train_batches(run.plan.split, config.batch_size, config.seed, 0))
    ema_before = jax.tree.leaves(state.ema_params)[0].copy()
    state, metrics = steps.train_step(state, parallel.put_batch(batch, run.mesh))
    assert int(state.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    assert not np.array_equal(jax.tree.leaves(state.ema_params)[0], ema_before)  # EMA follows


@pytest.mark.slow  # ~20 s: compiles a whole recipe's step
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
