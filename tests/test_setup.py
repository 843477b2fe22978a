"""Run set-up written once: what setup_run builds for training, scoring and populations, the
order of its checks, the one workdir check, and a failed start that writes nothing."""

from __future__ import annotations

import json
import types

import jax
import numpy as np
import pytest

from swinjax import errors
from swinjax.training import checkpoint, evaluation, trainer
from swinjax.training import workdir as workdir_lib
from swinjax.training.setup import setup_run
from tests.conftest import make_tiny_config


def test_a_training_run_has_its_splits_plan_model_and_replicated_state() -> None:
    run = setup_run(make_tiny_config())
    assert sorted(run.splits) == ["test", "train", "val"]
    assert [run.splits[k].num_examples for k in ("train", "val", "test")] == [1080, 120, 300]
    plan = run.plan
    assert (plan.split, plan.batch_size, plan.seed) == (run.splits["train"], 64, 0)
    assert (plan.steps_per_epoch, plan.num_epochs, plan.total_steps) == (16, 2, 32)
    assert run.model.num_classes == 10 and run.mesh.size == jax.device_count()
    state = run.take_state()
    assert int(state.step) == 0 and state.model is run.model
    assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params))
    assert run.state is None  # handed over: the run keeps no reference to it
    with pytest.raises(RuntimeError, match="already taken"):
        run.take_state()
    capped = setup_run(make_tiny_config(max_steps=5, seed=3))
    assert (capped.plan.total_steps, capped.plan.seed) == (5, 3)


def test_scoring_needs_no_plan_and_loads_only_its_split() -> None:
    run = setup_run(make_tiny_config(), splits={"val": "train[90%:]"}, train=False)
    assert list(run.splits) == ["val"] and run.plan is None
    assert run.splits["val"].num_examples == 120 and run.model.num_classes == 10
    with pytest.raises(ValueError, match="needs a 'train' split"):
        setup_run(make_tiny_config(), splits={"val": "train[90%:]"})


def test_a_population_stacks_its_members_and_reads_the_data_in_the_given_order() -> None:
    members = [make_tiny_config(learning_rate=lr, seed=s) for lr, s in ((1e-3, 0), (4e-3, 1))]
    run = setup_run(members[0], members=members, data_seed=7)
    state = run.take_state()
    assert state.step.shape == (2,) and run.plan.seed == 7
    np.testing.assert_allclose(state.hparams["learning_rate"], [1e-3, 4e-3])
    first = [x[0] for x in jax.tree.leaves(state.params)]
    second = [x[1] for x in jax.tree.leaves(state.params)]
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))  # seeds


def test_checks_run_after_validation_and_before_any_data(tmp_path) -> None:
    seen = []
    with pytest.raises(ValueError, match="config.model='swin_z' is not a preset"):
        setup_run(make_tiny_config(model="swin_z"), checks=[seen.append])
    assert seen == []  # an invalid config fails before the checks
    missing = make_tiny_config(dataset="cifar100", data_dir=str(tmp_path), download=False)
    with pytest.raises(errors.DatasetNotFoundError):
        setup_run(missing, checks=[seen.append])
    assert seen == [missing]  # the checks ran before the data were looked for


def test_one_workdir_check(tmp_path) -> None:
    config = make_tiny_config()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("precious")
    kwargs = dict(ignore={"num_epochs"}, holds="another run", fix="pick another")
    with pytest.raises(errors.ConfigError, match="exists and is not a directory"):
        workdir_lib.check_workdir(not_a_dir, config, None, **kwargs)
    saved = json.loads(config.to_json_best_effort())
    workdir_lib.check_workdir(tmp_path, config, saved, **kwargs)  # the same run
    workdir_lib.check_workdir(tmp_path, make_tiny_config(num_epochs=9), saved, **kwargs)
    message = r"holds another run \(learning_rate: 0.002 -> 0.1\); pick another$"
    with pytest.raises(errors.ConfigError, match=message):
        workdir_lib.check_workdir(tmp_path, make_tiny_config(learning_rate=0.1), saved, **kwargs)


def test_class_names_are_checked_against_a_split(tmp_path) -> None:
    split = types.SimpleNamespace(name="pets:test", class_names=("cat", "dog"), num_classes=2)
    workdir_lib.check_classes(tmp_path, split)  # nothing saved: a workdir of an older release
    workdir_lib.save_class_names(tmp_path, ("cat", "dog"))
    assert workdir_lib.load_class_names(tmp_path) == ("cat", "dog")
    workdir_lib.check_classes(tmp_path, split)
    other = types.SimpleNamespace(name="pets:test", class_names=("cat", "emu"), num_classes=2)
    message = r"pets:test does not have the classes .*: class 1 is 'emu' here, 'dog' there;"
    with pytest.raises(errors.ConfigError, match=message):
        workdir_lib.check_classes(tmp_path, other)
    fewer = types.SimpleNamespace(name="pets:test", class_names=("cat",), num_classes=1)
    with pytest.raises(errors.ConfigError, match="1 classes here, 2 there"):
        workdir_lib.check_classes(tmp_path, fewer)
    unnamed = types.SimpleNamespace(name="x", class_names=(), num_classes=3)
    assert workdir_lib.class_names(unnamed) == ("0", "1", "2")


def test_test_time_augmentation_comes_from_the_config_unless_overridden() -> None:
    off, on = make_tiny_config(), make_tiny_config(eval_tta=True, eval_tta_shift=2)
    assert evaluation.tta_settings(off) == (False, 0)
    assert evaluation.tta_settings(on) == (True, 2)
    assert evaluation.tta_settings(on, tta=False) == (False, 0)  # no move without TTA
    assert evaluation.tta_settings(off, tta=True) == (True, 0)
    assert evaluation.tta_settings(on, tta_shift=1) == (True, 1)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """Two steps of the tiny model: weights to start from."""
    workdir = tmp_path_factory.mktemp("source")
    quick = dict(num_epochs=1, max_steps=2, val_split="", test_split="")
    trainer.train_and_evaluate(make_tiny_config(**quick), workdir)
    return workdir


def test_a_failed_init_from_writes_nothing_and_the_fixed_command_trains(
    tmp_path, source_run
) -> None:
    quick = dict(num_epochs=1, max_steps=1, val_split="", test_split="")
    wrong = make_tiny_config(init_from=str(source_run), **quick)
    wrong.model_kwargs.embed_dim = 32  # not the source's architecture
    workdir = tmp_path / "finetune"
    with pytest.raises(errors.CheckpointMismatchError):
        trainer.train_and_evaluate(wrong, workdir)
    assert not workdir.exists()  # no config.json, checkpoints/ or tensorboard/ left behind
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(errors.CheckpointMismatchError):
        trainer.train_and_evaluate(wrong, existing)
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]  # as it was
    fixed = make_tiny_config(init_from=str(source_run), **quick)
    result = trainer.train_and_evaluate(fixed, workdir)
    assert result["step"] == 1
    assert checkpoint.saved_steps(workdir) == [1]
    names = json.loads((workdir / workdir_lib.CLASSES_FILE).read_text())
    assert names == [f"class_{k}" for k in range(10)]
