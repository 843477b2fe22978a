"""End to end on tiny models: epochs, checkpoints, resume, signals, NaN guard, eval CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from swinjax import data, errors
from swinjax import eval as eval_cli
from swinjax.config import build_model
from swinjax.optim import schedules
from swinjax.training import checkpoint, evaluation, plots, steps, trainer
from swinjax.training import state as state_lib
from swinjax.training import workdir as workdir_lib
from tests.conftest import REPO, make_tiny_config, over_versions


def _params_of(workdir, step=None):
    config = workdir_lib.load_config(workdir)
    split = data.load_split(config, config.train_split)
    template = state_lib.create_train_state(config, build_model(config, split), steps_per_epoch=1)
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    state, meta = (
        ckpt.restore(step, template) if step is not None else ckpt.restore_latest(template)
    )
    return state, meta


def test_two_epochs_write_checkpoints_metrics_and_plots(tmp_path, tiny_config) -> None:
    result = trainer.train_and_evaluate(tiny_config, tmp_path)
    assert result["epoch"] == 2 and result["step"] == 2 * (1080 // 64)
    assert result["test"]["num_examples"] == 300
    for name in ("config.json", "metrics.jsonl", "history.png", "test_samples.png"):
        assert (tmp_path / name).is_file(), name
    names = json.loads((tmp_path / "classes.json").read_text())  # for what reads the workdir
    assert names == list(data.load_split(tiny_config, "train").class_names)
    assert list((tmp_path / "tensorboard").iterdir())
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for key in (
        "train_loss",
        "train_top1",
        "val_loss",
        "val_top1",
        "val_top5",
        "epoch_seconds",
        "val_seconds",
    ):
        assert all(np.isfinite(e[key]) for e in epochs), key
    assert any(r["kind"] == "train_step" for r in records)
    # Once: seconds from set-up to the first step, compile included (less than the whole run's).
    [start] = [r for r in records if r["kind"] == "start"]
    assert (
        start["step"] == 1
        and 0 < start["first_step_s"] < sum(e["epoch_seconds"] for e in epochs) + 60
    )
    ckpt = checkpoint.Checkpointer(tmp_path, read_only=True)
    assert ckpt.all_steps() == [16, 32]
    assert ckpt.best_step() in (16, 32)


@pytest.mark.slow
@over_versions
def test_interrupt_and_resume_equals_uninterrupted(tmp_path, version) -> None:
    config = make_tiny_config(version=version)
    straight = tmp_path / "straight"
    trainer.train_and_evaluate(config, straight)
    resumed = tmp_path / "resumed"
    first = trainer.train_and_evaluate(
        make_tiny_config(version=version, max_steps=21), resumed
    )  # mid epoch 2
    assert first["step"] == 21 and first["stopped_by"] == "max_steps"
    assert checkpoint.Checkpointer(resumed, read_only=True).all_steps()[-1] == 21
    trainer.train_and_evaluate(config, resumed)
    a, meta_a = _params_of(straight)
    b, meta_b = _params_of(resumed)
    assert int(a.step) == int(b.step) == 32 and meta_a == meta_b
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)  # bitwise on the CPU
    for x, y in zip(jax.tree.leaves(a.opt_state), jax.tree.leaves(b.opt_state), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_v2_run_stopped_mid_epoch_resumes_bitwise(tmp_path) -> None:
    """The fast tier's Swin V2 case of the test above: 5 steps straight, or 3 then 5 (no
    evaluation: the train step is what resumes)."""

    def config(steps):
        return make_tiny_config(version=2, max_steps=steps, val_split="", test_split="")

    straight = trainer.train_and_evaluate(config(5), tmp_path / "a")
    trainer.train_and_evaluate(config(3), tmp_path / "b")
    resumed = trainer.train_and_evaluate(config(5), tmp_path / "b")
    assert straight["step"] == resumed["step"] == 5
    a, meta_a = _params_of(tmp_path / "a")
    b, meta_b = _params_of(tmp_path / "b")
    assert a.model.version == 2 and meta_a == meta_b and int(a.step) == int(b.step) == 5
    for tree in ("params", "opt_state"):
        for x, y in zip(
            jax.tree.leaves(getattr(a, tree)), jax.tree.leaves(getattr(b, tree)), strict=True
        ):
            np.testing.assert_array_equal(x, y, err_msg=tree)  # bitwise on the CPU


def _tools_config(**overrides):
    """Every recipe tool on: TrivialAugment, mixup + CutMix, random erasing, EMA, flip TTA."""
    tools = dict(
        augment_policy="trivialaugment",
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        erase_prob=0.25,
        ema_decay=0.9,
        eval_tta=True,
        schedule="one_cycle",
    )
    return make_tiny_config(**{**tools, **overrides})


@pytest.mark.slow
@over_versions
def test_resume_with_recipe_tools_equals_uninterrupted(tmp_path, capsys, version) -> None:
    straight = tmp_path / "straight"
    trainer.train_and_evaluate(_tools_config(version=version), straight)
    resumed = tmp_path / "resumed"
    first = trainer.train_and_evaluate(_tools_config(version=version, max_steps=21), resumed)
    assert first["step"] == 21  # mid epoch 2
    trainer.train_and_evaluate(_tools_config(version=version), resumed)
    a, _ = _params_of(straight)
    b, _ = _params_of(resumed)
    assert a.ema_params is not None and int(a.step) == int(b.step) == 32
    for tree in ("params", "opt_state", "ema_params"):
        for x, y in zip(
            jax.tree.leaves(getattr(a, tree)), jax.tree.leaves(getattr(b, tree)), strict=True
        ):
            np.testing.assert_array_equal(x, y, err_msg=tree)  # bitwise on the CPU
    epochs = _records(straight, "epoch")
    assert len(epochs) == 2
    for e, r in zip(epochs, _records(resumed, "epoch"), strict=True):
        for key in ("val_loss", "val_top1", "val_ema_loss", "val_ema_top1"):
            assert e[key] == r[key], key  # the same states, scored the same way
    # --best: the checkpoint whose better of its two validation top-1s is the highest.
    ckpt = checkpoint.Checkpointer(straight, read_only=True)
    scores = {e["step"]: max(e["val_top1"], e["val_ema_top1"]) for e in epochs}
    assert ckpt.best_step() == max(scores, key=lambda step: (scores[step], step))
    argv = ["swinjax.eval", "--ckpt", str(straight), "--split", "val", "--best", "--tta"]
    assert eval_cli.main(argv) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["tta"] is True and record["step"] == ckpt.best_step()
    assert record["tta_shift"] == 0  # the run's eval_tta_shift
    chosen = next(e for e in epochs if e["step"] == record["step"])
    for key in ("loss", "top1", "top5", "ema_loss", "ema_top1", "ema_top5"):
        assert record[key] == pytest.approx(chosen[f"val_{key}"], rel=1e-6), key


def test_sigterm_saves_and_exits_cleanly(tmp_path, tiny_config, monkeypatch) -> None:
    real = data.train_batches

    def batches_then_signal(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if i == 5:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    monkeypatch.setattr(data, "train_batches", batches_then_signal)
    result = trainer.train_and_evaluate(tiny_config, tmp_path)
    assert result["stopped_by"] == "SIGTERM"
    steps_saved = checkpoint.Checkpointer(tmp_path, read_only=True).all_steps()
    assert steps_saved and 1 <= steps_saved[-1] < 16  # saved where it stopped, mid epoch 1
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler was put back
    monkeypatch.setattr(data, "train_batches", real)
    final = trainer.train_and_evaluate(tiny_config, tmp_path)  # resumes to the end
    assert final["step"] == 32 and "test" in final


def test_corrupted_latest_checkpoint_falls_back(tmp_path, tiny_config) -> None:
    trainer.train_and_evaluate(tiny_config, tmp_path)
    latest = tmp_path / "checkpoints" / "32" / "state"
    for f in latest.rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0garbage")
    reports = []
    config = workdir_lib.load_config(tmp_path)
    split = data.load_split(config, config.train_split)
    template = state_lib.create_train_state(config, build_model(config, split), steps_per_epoch=1)
    state, meta = checkpoint.Checkpointer(tmp_path).restore_latest(template, report=reports.append)
    assert int(state.step) == 16 and meta["epoch"] == 1
    assert len(reports) == 1 and "checkpoints/32 is unreadable" in reports[0]


def test_nan_stops_training_and_keeps_the_best(tmp_path, monkeypatch, capsys) -> None:
    trainer.train_and_evaluate(make_tiny_config(num_epochs=1), tmp_path)
    before = checkpoint.Checkpointer(tmp_path, read_only=True).all_steps()
    real = steps.train_step

    def nan_after_20(state, batch):
        state, metrics = real(state, batch)
        if int(state.step) > 20:
            metrics = dict(metrics, loss=metrics["loss"] * np.nan)
        return state, metrics

    monkeypatch.setattr(steps, "train_step", nan_after_20)
    capsys.readouterr()
    with pytest.raises(FloatingPointError, match="non-finite metrics at step 21"):
        trainer.train_and_evaluate(make_tiny_config(progress_bar=True), tmp_path)
    ckpt = checkpoint.Checkpointer(tmp_path, read_only=True)
    assert ckpt.all_steps() == before == [16] and ckpt.best_step() == 16
    bar = capsys.readouterr().err
    assert "epoch 2" in bar and bar.endswith("\n")  # closed: the error's line starts afresh


def test_bad_config_and_workdir_fail_before_training(tmp_path, tiny_config) -> None:
    with pytest.raises(ValueError, match="config.model='swin_z' is not a preset"):
        trainer.train_and_evaluate(make_tiny_config(model="swin_z"), tmp_path / "a")
    with pytest.raises(ValueError, match="config.batch_size must be >= 1"):
        trainer.train_and_evaluate(make_tiny_config(batch_size=0), tmp_path / "b")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("precious")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        trainer.train_and_evaluate(tiny_config, not_a_dir)
    assert not_a_dir.read_text() == "precious"
    with pytest.raises(errors.DatasetNotFoundError):
        trainer.train_and_evaluate(
            make_tiny_config(dataset="cifar100", data_dir=str(tmp_path)), tmp_path / "c"
        )
    assert not (tmp_path / "c").exists()  # nothing written before the data is there


def test_other_runs_workdir_is_refused(tmp_path, tiny_config) -> None:
    trainer.train_and_evaluate(make_tiny_config(num_epochs=1), tmp_path)
    with pytest.raises(ValueError, match=r"different config \(learning_rate: 0.002 -> 0.1\)"):
        trainer.train_and_evaluate(make_tiny_config(learning_rate=0.1), tmp_path)


def test_eval_scores_every_example_and_reports_json(
    tmp_path, tiny_config, capsys, mock_tfds
) -> None:
    with mock_tfds("cifar100", num_examples=50) as data_dir:  # cifar100 through real tfds code
        config = make_tiny_config(
            dataset="cifar100",
            data_dir=data_dir,
            input_pipeline="memory",  # the mock records no split sizes for "auto" to weigh
            model="keras_example",
            num_epochs=1,
            batch_size=16,
            eval_batch_size=16,
            augment="seed_exact",
        )
        trainer.train_and_evaluate(config, tmp_path / "run")
        assert (
            eval_cli.main(["swinjax.eval", "--ckpt", str(tmp_path / "run"), "--split", "test"]) == 0
        )
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["num_examples"] == 50 and record["split"] == "test"  # 50 = 3 * 16 + 2
    assert record["step"] == 2 and set(record) >= {"loss", "top1", "top5"}  # 45 train // 16


@pytest.mark.slow
def test_train_and_eval_on_a_tfds_dir_built_by_tfds(tmp_path, tiny_tfds_dir, monkeypatch) -> None:
    spec = tiny_tfds_dir.spec  # train 300 (train[:90%] / train[90%:]), test 70, 16x16x3
    config = make_tiny_config(dataset=tiny_tfds_dir.name, data_dir=tiny_tfds_dir.data_dir)
    assert spec.train_examples % 10 == 0  # so train[90%:] holds exactly a tenth
    num_val = spec.train_examples // 10
    num_train = spec.train_examples - num_val
    evaluated = []
    real_evaluate = trainer.evaluation.evaluate

    def recording_evaluate(state, split, *args, **kwargs):
        result = real_evaluate(state, split, *args, **kwargs)
        evaluated.append((split.name, result["num_examples"]))
        return result

    monkeypatch.setattr(trainer.evaluation, "evaluate", recording_evaluate)
    result = trainer.train_and_evaluate(config, tmp_path / "run")
    steps_per_epoch = num_train // config.batch_size
    assert result["epoch"] == 2 and result["step"] == 2 * steps_per_epoch
    val_name, test_name = f"{spec.name}:train[90%:]", f"{spec.name}:test"
    # Every example counted once: the last val and test batches are padding-masked.
    assert num_val % config.batch_size and spec.test_examples % config.batch_size
    assert evaluated == [(val_name, num_val), (val_name, num_val), (test_name, spec.test_examples)]
    assert result["test"]["num_examples"] == spec.test_examples
    assert all(np.isfinite(result["test"][k]) for k in ("loss", "top1", "top5"))
    # The saved config names the tfds dataset and its data_dir: eval needs nothing else.
    record = evaluation.evaluate_checkpoint(str(tmp_path / "run"), "val", best=True)
    assert record["num_examples"] == num_val and record["split"] == "val"
    assert (tmp_path / "run" / "test_samples.png").is_file()


def test_eval_cli_bad_paths_exit_2(tmp_path, tiny_config, capsys) -> None:
    assert eval_cli.main(["swinjax.eval", "--ckpt", str(tmp_path / "missing")]) == 2
    assert eval_cli.main(["swinjax.eval", "--ckpt", str(tmp_path)]) == 2  # exists, not a workdir
    trainer.train_and_evaluate(make_tiny_config(num_epochs=1), tmp_path / "run")
    classes = tmp_path / "run" / "classes.json"
    saved = classes.read_text()
    classes.write_text(json.dumps([f"class_{k}" for k in range(9)] + ["zebra"]))
    capsys.readouterr()
    assert eval_cli.main(["swinjax.eval", "--ckpt", str(tmp_path / "run")]) == 2  # other classes
    assert "class 9 is 'class_9' here, 'zebra' there" in capsys.readouterr().err
    classes.write_text(saved)
    assert (
        eval_cli.main(["swinjax.eval", "--ckpt", str(tmp_path / "run" / "checkpoints" / "99")]) == 2
    )
    # A checkpoint that does not match the saved config's model.
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg["model_kwargs"] = {"embed_dim": 32}
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg))
    assert (
        eval_cli.main(["swinjax.eval", "--ckpt", str(tmp_path / "run" / "checkpoints" / "16")]) == 2
    )


@pytest.mark.slow
@over_versions
def test_train_cli_end_to_end(tmp_path, version) -> None:
    cmd = [
        sys.executable,
        "-m",
        "swinjax.train",
        "--config",
        str(REPO / "experiments/demo.py"),
        "--workdir",
        str(tmp_path),
        f"--config.model_kwargs.version={version}",
        "--config.num_epochs=1",
        "--config.progress_bar=False",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["epoch"] == 1
    assert workdir_lib.load_config(tmp_path).model_kwargs.version == version  # saved as given
    bad = subprocess.run(
        cmd[:-2] + ["--config.learning_rate=-1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert bad.returncode == 2 and "config.learning_rate=-1" in bad.stderr


@pytest.mark.slow
def test_extending_a_finished_run_replans_the_schedule(tmp_path, capsys) -> None:
    """num_epochs 2 -> 4 on a finished warmup_cosine run: epochs 3-4 train at the learning rate
    of a 4-epoch schedule (not at min_lr), and the run says so at start."""
    first = trainer.train_and_evaluate(make_tiny_config(), tmp_path)  # 2 epochs, 32 steps
    assert first["step"] == 32
    capsys.readouterr()
    longer = make_tiny_config(num_epochs=4)
    result = trainer.train_and_evaluate(longer, tmp_path)
    out = capsys.readouterr().out
    assert "re-planned for 64 steps (was 32)" in out
    assert result["step"] == 64 and result["epoch"] == 4 and "test" in result
    state, _ = _params_of(tmp_path)
    assert float(state.hparams["total_steps"]) == 64
    logged = [r for r in _records(tmp_path, "train_step") if r["step"] > 32]
    assert logged  # every log_every_steps=4 steps
    hparams = dict(state.hparams)
    for r in logged:  # metrics of step s report the learning rate of optimizer step s - 1
        want = schedules.learning_rate_at(jax.numpy.int32(r["step"] - 1), hparams, "warmup_cosine")
        np.testing.assert_allclose(r["learning_rate"], float(want), rtol=1e-6)
    assert max(r["learning_rate"] for r in logged) > 0.4 * longer.learning_rate  # not min_lr


def test_config_json_and_other_keys_on_resume(tmp_path) -> None:
    """Keys that do not change the computation may differ on a re-run; the saved config then
    holds the new values. A key that changes the computation is refused, naming it."""
    trainer.train_and_evaluate(make_tiny_config(num_epochs=1), tmp_path)
    trainer.train_and_evaluate(make_tiny_config(num_epochs=1, log_every_steps=3), tmp_path)
    assert workdir_lib.load_config(tmp_path).log_every_steps == 3
    with pytest.raises(ValueError, match=r"model_kwargs.embed_dim: None -> 32"):
        config = make_tiny_config(num_epochs=1)
        config.model_kwargs.embed_dim = 32
        trainer.train_and_evaluate(config, tmp_path)


def test_sample_titles_say_the_truth_and_the_prediction() -> None:
    images_EHWC = np.zeros((3, 4, 4, 3), np.uint8)
    fig = plots.predictions_figure(
        images_EHWC, np.array([0, 1, 2]), np.array([0, 2, 5]), ["cat", "dog", "emu"]
    )
    titled = [ax.title for ax in fig.axes if ax.get_title()]
    assert [t.get_text() for t in titled] == [
        "true: cat\npred: cat",
        "true: dog\npred: emu",
        "true: emu\npred: 5",  # a class without a name: its number
    ]
    assert [t.get_color() for t in titled] == ["green", "red", "red"]


def _records(workdir, kind):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]
