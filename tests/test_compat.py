"""Workdirs and configs written by older releases still work.

``tests/fixtures/workdir_52f3f97`` is a real workdir of the release before the package became
subpackages (commit 52f3f97: ``experiments/demo.py`` with num_epochs=2, ema_decay=0.99,
keep_checkpoints=1, progress_bar=False, num_sample_images=6; checkpoint at step 32): on a copy,
it resumes, evaluates (``python -m swinjax.eval --ckpt``) and fine-tunes. The configs in
``tests/fixtures/saved_configs/COMMIT.json`` are ``experiments/demo.py`` saved by the
``save_config`` of older releases (one per set of keys there has been): each is brought forward
(:func:`swinjax.config.upgrade_saved_config`) to a config that validates and keeps every value
it had.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from swinjax import config as config_lib
from swinjax.training import checkpoint
from swinjax.training import workdir as workdir_lib
from tests.conftest import REPO, make_tiny_config

FIXTURES = REPO / "tests" / "fixtures"
WORKDIR = FIXTURES / "workdir_52f3f97"
SAVED = sorted((FIXTURES / "saved_configs").glob("*.json"))


def _fixture_config(**overrides) -> ml_collections.ConfigDict:
    """The config the fixture workdir was trained with (log_every_steps, an output key, aside)."""
    fixed = dict(num_epochs=2, ema_decay=0.99, keep_checkpoints=1, num_sample_images=6)
    return make_tiny_config(**{**fixed, **overrides})


@pytest.fixture
def old_workdir(tmp_path):
    copy = tmp_path / "old_run"
    shutil.copytree(WORKDIR, copy)
    return copy


# ------------------------------------------------------------------------------ saved configs


def test_current_configs_come_back_equal() -> None:
    saved = json.loads((WORKDIR / "config.json").read_text())
    upgraded = config_lib.upgrade_saved_config(saved)
    fields, saved_fields = upgraded.pop("model_kwargs"), saved.pop("model_kwargs")
    assert {k: upgraded[k] for k in saved} == saved  # the fixture's release is this one's
    assert {k: fields[k] for k in saved_fields} == saved_fields
    for name in set(fields) - set(saved_fields):  # model fields added since (version): unset
        assert fields[name] is None, name
    for key in set(upgraded) - set(saved):  # or keys added since, at their table defaults
        assert upgraded[key] == config_lib.KEYS[key].default, key
    current = json.loads(config_lib.base_config().to_json_best_effort())
    assert config_lib.upgrade_saved_config(current) == current


@pytest.mark.parametrize("path", SAVED, ids=[p.stem for p in SAVED])
def test_older_saved_configs_upgrade_and_validate(path) -> None:
    saved = json.loads(path.read_text())
    upgraded = config_lib.upgrade_saved_config(saved)
    assert set(upgraded) == set(config_lib.KEYS)
    assert set(upgraded["model_kwargs"]) == set(config_lib.model_fields())
    for key, value in saved.items():  # every value it had stays
        if key == "model_kwargs":
            assert upgraded[key] | value == upgraded[key]
        elif key != "synthetic":  # a section that became keys (test_the_first_releases_...)
            assert upgraded[key] == value, key
    config_lib.validate_config(ml_collections.ConfigDict(upgraded))
    assert upgraded == config_lib.upgrade_saved_config(upgraded)  # brought forward once


def test_keys_a_release_lacked_get_what_it_did() -> None:
    saved = json.loads((WORKDIR / "config.json").read_text())
    for key in ("augment_policy", "ema_decay", "eval_tta_shift", "kernels", "remat", "augment"):
        del saved[key]
    del saved["input_pipeline"]
    saved["model_kwargs"] = {"window_size": 8}  # before 10d61ac: only the fields it set
    upgraded = config_lib.upgrade_saved_config(saved)
    assert upgraded["augment_policy"] == "" and upgraded["ema_decay"] == 0.0  # tools off
    assert upgraded["eval_tta_shift"] == 0
    assert (upgraded["kernels"], upgraded["remat"]) == ("auto", "none")
    # In every config.json since the first (3970415): its default, never needed in practice.
    assert upgraded["augment"] == "crop_flip"
    # Before 55a7914 every split was read into memory; 'auto' could stream a large one.
    assert upgraded["input_pipeline"] == "memory"
    assert upgraded["model_kwargs"]["window_size"] == 8
    assert upgraded["model_kwargs"]["embed_dim"] is None  # the preset's
    assert upgraded["rrc_scale"] == [0.08, 1.0]  # JSON values, as saved


def test_the_first_releases_synthetic_section() -> None:
    saved = json.loads((FIXTURES / "saved_configs" / "3970415.json").read_text())
    saved["seed"] = 3
    saved["synthetic"]["image_size"] = 8
    upgraded = config_lib.upgrade_saved_config(saved)
    assert "synthetic" not in upgraded
    assert upgraded["synthetic_image_size"] == 8 and upgraded["synthetic_train_examples"] == 1200
    assert upgraded["synthetic_seed"] == 3  # 3970415 drew the synthetic data with config.seed


def test_load_config_and_resume_check_read_upgraded_configs(old_workdir) -> None:
    from swinjax.training import trainer

    path = old_workdir / "config.json"
    saved = json.loads(path.read_text())
    del saved["eval_tta_shift"]
    path.write_text(json.dumps(saved))
    assert workdir_lib.load_config(old_workdir).eval_tta_shift == 0
    trainer.check_run_workdir(old_workdir, _fixture_config(num_epochs=3))  # only RESUMABLE differs
    with pytest.raises(ValueError, match=r"eval_tta_shift: 0 -> 1"):
        trainer.check_run_workdir(old_workdir, _fixture_config(eval_tta=True, eval_tta_shift=1))


def test_a_sweeps_saved_base_is_upgraded(tmp_path) -> None:
    base = make_tiny_config()
    flat = config_lib.flatten(base)
    del flat["eval_tta_shift"], flat["model_kwargs.stem_strides"]  # saved before they existed
    path = tmp_path / "sweep_config.json"
    path.write_text(json.dumps({"base": flat, "sweep": {"mode": "grid"}}))
    saved = config_lib.saved_config(path)
    assert saved["sweep"] == {"mode": "grid"} and saved["base"]["eval_tta_shift"] == 0
    assert config_lib.diff_configs(saved["base"], base) == {}
    assert config_lib.saved_config(tmp_path / "absent.json") is None


# ---------------------------------------------------------------------- the workdir of 52f3f97


def test_old_workdir_resumes(old_workdir, capsys) -> None:
    from swinjax.training import trainer

    result = trainer.train_and_evaluate(_fixture_config(num_epochs=3), old_workdir)
    assert "resumed from step 32 (epoch 2" in capsys.readouterr().out
    assert (result["step"], result["epoch"], result["stopped_by"]) == (48, 3, None)
    assert 0.0 <= result["test"]["top1"] <= 1.0 and "ema_top1" in result["test"]
    assert checkpoint.Checkpointer(old_workdir, read_only=True).all_steps()[-1] == 48


def test_old_workdir_evaluates(old_workdir) -> None:
    cmd = [sys.executable, "-m", "swinjax.eval", "--ckpt", str(old_workdir)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["step"], result["num_examples"]) == (32, 300)
    # The scores the older release wrote for this checkpoint's test split.
    test = [json.loads(line) for line in (WORKDIR / "metrics.jsonl").read_text().splitlines()]
    test = next(r for r in test if r["kind"] == "test")
    assert result["top1"] == pytest.approx(test["top1"], abs=1e-9)
    assert result["ema_top1"] == pytest.approx(test["ema_top1"], abs=1e-9)


def test_old_workdir_fine_tunes(old_workdir, tmp_path, capsys) -> None:
    from swinjax.training import trainer

    config = make_tiny_config(num_epochs=1, max_steps=1, learning_rate=1e-9, classes="5,6,7,8,9")
    config.init_from = str(old_workdir)
    config.model_kwargs.img_size = 32  # 32x32 inputs (resized on the device), window 8
    config.model_kwargs.window_size = 8
    trainer.train_and_evaluate(config, tmp_path / "finetune")
    out = capsys.readouterr().out
    assert f"pretrained weights from {old_workdir}" in out
    assert "relative_position_bias_table (x2): (49, 2) -> (225, 2) (window 8x8)" in out
    assert "head re-initialised (10 -> 5 classes)" in out
    old, new = _params(old_workdir), _params(tmp_path / "finetune")
    kernel = ("patch_embed", "proj", "kernel")
    np.testing.assert_allclose(new[kernel], old[kernel], atol=1e-6)  # loaded as it was


def _params(workdir):
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    return traverse_util.flatten_dict(ckpt.restore_params(ckpt.all_steps()[-1]))


def test_a_hyperparameter_added_since_takes_the_template_value(old_workdir) -> None:
    """A float32 hyperparameter added to the key table after a checkpoint was written: the
    checkpoint restores, the new entry from the template (the upgraded config's value), every
    other leaf from disk."""
    import jax.numpy as jnp

    from swinjax import data
    from swinjax.training.state import create_train_state

    config = workdir_lib.load_config(old_workdir)
    split = data.load_split(config, config.train_split)
    model = config_lib.build_model(config, split)
    template = create_train_state(config, model, steps_per_epoch=16)
    grown = template.replace(hparams={**template.hparams, "a_new_hparam": jnp.float32(0.25)})
    ckpt = checkpoint.Checkpointer(old_workdir, read_only=True)
    state, meta = ckpt.restore(32, grown)
    saved, _ = ckpt.restore(32, template)
    assert int(state.step) == 32 and meta == {"epoch": 2, "epoch_step": 0}
    assert float(state.hparams["a_new_hparam"]) == 0.25
    assert set(state.hparams) == set(saved.hparams) | {"a_new_hparam"}
    for key, value in saved.hparams.items():
        assert float(state.hparams[key]) == float(value), key
    np.testing.assert_array_equal(
        state.params["head"]["fc"]["kernel"], saved.params["head"]["fc"]["kernel"]
    )
