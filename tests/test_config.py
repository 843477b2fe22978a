"""The table of config keys (swinjax.config.KEYS) and what is derived from it: the base config,
the key lists the rest of the package reads (as the hand-written lists of the release before
they were derived, 52f3f97), ``TrainState.hparams`` (the same keys and float32 values as that
release built), ``--list_keys`` and the docs."""

from __future__ import annotations

import dataclasses
import importlib.util

import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import config as config_lib
from swinjax.training import recipe as recipe_lib
from swinjax.training import state as state_lib
from tests.conftest import REPO, make_tiny_config

# ---------------------------------------------------------------------------------- the table


def test_rows_and_base_config() -> None:
    keys = config_lib.KEYS
    assert set(config_lib.base_config()) == set(keys)
    sections = [row.section for row in keys.values()]
    assert list(dict.fromkeys(sections)) == list(config_lib.SECTIONS)  # grouped, in that order
    for name, row in keys.items():
        assert row.role in config_lib.ROLES and row.meaning, name
        if row.hparam:  # an array of the state: a population may vary it
            assert row.role == config_lib.RUN and row.population, name
    assert config_lib.section_keys("launch") == ("distributed", "sharding", "compilation_cache")
    with pytest.raises(ValueError, match="no config section 'nope'"):
        config_lib.section_keys("nope")


def test_a_row_written_in_the_wrong_order_fails() -> None:
    with pytest.raises(ValueError, match="Key role 'peak learning rate' is not one of"):
        config_lib.Key(1e-3, "peak learning rate", config_lib.RUN)
    with pytest.raises(ValueError, match="an hparam Key is a RUN key that a population"):
        config_lib.Key(0.0, config_lib.OUTPUT, "x", hparam=config_lib.ALWAYS)
    row = config_lib.Key(0.0, config_lib.RUN, "x")
    with pytest.raises(ValueError, match="Key section 'optimizer' is not one of"):
        dataclasses.replace(row, section="optimizer")


def test_tool_hparams_name_recipe_flags() -> None:
    flags = {f.name for f in dataclasses.fields(recipe_lib.Recipe)} | {"mixing", "randaugment"}
    assert set(config_lib.TOOL_HPARAM_KEYS.values()) <= flags
    on = recipe_lib.Recipe("randaugment", 2, True, True, True, True)
    for flag in config_lib.TOOL_HPARAM_KEYS.values():
        assert getattr(recipe_lib.Recipe(), flag) is False and getattr(on, flag) is True


# The lists written by hand at 52f3f97 (optim.HPARAM_KEYS, search.POPULATION_KEYS, the roles).
HPARAM_KEYS_52F3F97 = {
    "learning_rate", "min_lr", "warmup_steps", "total_steps", "weight_decay", "label_smoothing",
    "b1", "b2", "adam_eps", "adam_eps_keras", "grad_clip_norm", "layer_decay",
}  # fmt: skip
POPULATION_KEYS_52F3F97 = {
    "learning_rate", "min_lr", "warmup_epochs", "weight_decay", "label_smoothing", "b1", "b2",
    "adam_eps", "adam_eps_keras", "grad_clip_norm", "layer_decay", "freeze", "seed",
    "randaug_magnitude", "mixup_alpha", "cutmix_alpha", "mix_prob", "mix_switch_prob",
    "erase_prob", "ema_decay",
}  # fmt: skip
RESUMABLE_52F3F97 = {
    "checkpoint_every_epochs", "data_dir", "distributed", "download", "eval_batch_size",
    "keep_checkpoints", "log_every_steps", "max_steps", "num_epochs", "num_sample_images",
    "progress_bar", "test_split",
}  # fmt: skip
# Resumable keys added since, each with why a re-run may change it (see the key's row).
RESUMABLE_ADDED = {
    "bad_images",  # a run that goes on with 'fail' met no bad file: it reads what 'skip' reads
    "sharding",  # where the state lives, not what it is: a run resumes on another device count
    "compilation_cache",  # where compiled steps are cached: the same results, sooner
}


def test_derived_lists_are_the_hand_written_ones() -> None:
    derived = {"warmup_steps", "total_steps"}  # from warmup_epochs and num_epochs
    # Every hand-listed key is derived; a key beyond them is a hyperparameter row added since
    # (hparam=ALWAYS), which is an array of the state and a population may vary.
    added = (set(config_lib.HPARAM_KEYS) | derived) - HPARAM_KEYS_52F3F97
    assert set(config_lib.HPARAM_KEYS) | derived >= HPARAM_KEYS_52F3F97
    assert config_lib.POPULATION_KEYS == POPULATION_KEYS_52F3F97 | added
    for key in added:
        assert config_lib.KEYS[key].hparam == config_lib.ALWAYS, key
    assert config_lib.RESUMABLE == RESUMABLE_52F3F97 | RESUMABLE_ADDED
    assert config_lib.SWEEP_IGNORED == (RESUMABLE_52F3F97 | RESUMABLE_ADDED) - {
        "max_steps",
        "num_epochs",
    }


# ------------------------------------------------------------------- TrainState.hparams as before


def _hparams_at_52f3f97(config, steps_per_epoch: int, recipe) -> dict:
    """``state._hparams`` and ``recipe.hparams`` as they were at 52f3f97 (hand-written)."""
    hparams = {
        "learning_rate": config.learning_rate,
        "min_lr": config.min_lr,
        "warmup_steps": round(config.warmup_epochs * steps_per_epoch),
        "total_steps": config.num_epochs * steps_per_epoch,
        "weight_decay": config.weight_decay,
        "label_smoothing": config.label_smoothing,
        "b1": config.b1,
        "b2": config.b2,
        "adam_eps": config.adam_eps,
        "adam_eps_keras": float(config.adam_eps_keras),
        "grad_clip_norm": config.grad_clip_norm,
        "layer_decay": config.layer_decay,
    }
    tools: dict = {}
    if recipe.policy == "randaugment":
        tools["randaug_magnitude"] = config.randaug_magnitude
    if recipe.mixup:
        tools["mixup_alpha"] = config.mixup_alpha
    if recipe.cutmix:
        tools["cutmix_alpha"] = config.cutmix_alpha
    if recipe.mixup or recipe.cutmix:
        tools.update(mix_prob=config.mix_prob, mix_switch_prob=config.mix_switch_prob)
    if recipe.erase:
        tools["erase_prob"] = config.erase_prob
    if recipe.ema:
        tools["ema_decay"] = config.ema_decay
    hparams |= {k: float(v) for k, v in tools.items()}
    return {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}


def _experiment(name: str, variant: str = ""):
    path = REPO / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


CONFIGS = {
    "demo": lambda: make_tiny_config(),
    "keras_example": lambda: _experiment("keras_example"),
    "keras_example_plus": lambda: _experiment("keras_example_plus"),
    "cifar_strong": lambda: _experiment("cifar_strong"),
    "cifar100_strong": lambda: _experiment("cifar100_strong"),  # every tool on
    "randaugment_mixup": lambda: make_tiny_config(augment_policy="randaugment", mixup_alpha=0.4),
    "cutmix_erase": lambda: make_tiny_config(cutmix_alpha=1.0, erase_prob=0.3, warmup_epochs=0.5),
    "finetune": lambda: _experiment("finetune_demo"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_state_hparams_are_those_of_52f3f97(name) -> None:
    config = CONFIGS[name]()
    recipe = recipe_lib.from_config(config)
    for steps_per_epoch in (1, 17):
        got = state_lib._hparams(config, steps_per_epoch, recipe)
        want = _hparams_at_52f3f97(config, steps_per_epoch, recipe)
        assert set(got) == set(want) | set(config_lib.HPARAM_KEYS)  # plus keys added since
        for k in want:
            assert got[k].dtype == jnp.float32 and got[k].shape == ()
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)


# -------------------------------------------------------------------------- --list_keys, docs


def test_describe_keys_groups_by_section() -> None:
    lines = config_lib.describe_keys().splitlines()
    headers = [line.split(":")[0] for line in lines if not line.startswith(" ")]
    assert headers == list(config_lib.SECTIONS)
    rows = [line.split() for line in lines if line.startswith(" ")]
    assert [r[0] for r in rows] == list(config_lib.KEYS)
    lr = next(line for line in lines if line.split()[0] == "learning_rate")
    assert "0.001" in lr and "peak learning rate" in lr
    optim = lines.index(next(line for line in lines if line.startswith("optim:")))
    assert lines.index(lr) > optim


def test_training_docs_list_every_key_in_its_section() -> None:
    text = (REPO / "docs" / "training.md").read_text()
    table = text[text.index("| section | keys |") :]
    table = table[: table.index("\n\n")]
    for section in config_lib.SECTIONS:
        row = next(line for line in table.splitlines() if line.startswith(f"| {section} |"))
        for key in config_lib.section_keys(section):
            assert f"`{key}`" in row, (section, key)
