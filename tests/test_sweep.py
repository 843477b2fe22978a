"""Sweeps: the search space, validation, resumable results, population == sequential, one compile.

Every sweep here trains tiny_test on the synthetic data for one epoch (16 steps of 64 images,
120 validation images) per point.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys

import jax
import numpy as np
import pytest

from swinjax import errors
from swinjax.sweeps import runner, space
from swinjax.training import steps
from tests.conftest import REPO, make_tiny_config


def _config(grid=None, execution="sequential", **overrides):
    config = make_tiny_config(num_epochs=1, test_split="", **overrides)
    config.sweep = space.default_sweep_config()
    config.sweep.grid = grid if grid is not None else {"learning_rate": [1e-3, 3e-3]}
    config.sweep.execution = execution
    return config


def _lines(workdir):
    return [json.loads(line) for line in (workdir / runner.RESULTS_FILE).read_text().splitlines()]


def _spy_train_points(monkeypatch):
    """Records the points of every train_points call (and still trains them)."""
    calls = []
    real = runner.train_points

    def spy(base, points, execution, log):
        calls.append([dict(p) for p in points])
        return real(base, points, execution, log)

    monkeypatch.setattr(runner, "train_points", spy)
    return calls


# ----------------------------------------------------------------------------- search space


def test_grid_expands_to_the_cartesian_product_in_sorted_key_order() -> None:
    config = _config({"weight_decay": [0.0, 0.1], "learning_rate": [1e-3, 3e-3, 1e-2]})
    base, spec = space.split_config(config)
    space.validate_sweep(base, spec)
    points = space.expand(spec)
    assert points == [
        {"learning_rate": lr, "weight_decay": wd} for lr in (1e-3, 3e-3, 1e-2) for wd in (0.0, 0.1)
    ]
    assert "sweep" not in base and "sweep" in config  # the training config stays as it was
    c = space.point_config(base, points[3])
    assert (c.learning_rate, c.weight_decay) == (3e-3, 0.1)
    assert space.point_id({"a": 1, "b": [2, 3]}) == space.point_id({"b": (2, 3), "a": 1.0})


def test_random_sampling_is_a_pure_function_of_the_sweep_seed() -> None:
    def points(seed):
        config = _config({}, "population")
        config.sweep.mode = "random"
        config.sweep.random = {
            "learning_rate": ("log_uniform", 1e-4, 1e-2),
            "weight_decay": ("uniform", 0.0, 0.1),
            "seed": ("int_uniform", 0, 3),
            "label_smoothing": ("choice", 0.0, 0.1),
        }
        config.sweep.num_samples = 12
        config.sweep.seed = seed
        base, spec = space.split_config(config)
        space.validate_sweep(base, spec)
        return space.expand(spec)

    a, b, other = points(0), points(0), points(1)
    assert a == b and a != other
    assert 1 < len(a) <= 12  # duplicates (possible with choice / int_uniform) are dropped
    for p in a:
        assert 1e-4 <= p["learning_rate"] <= 1e-2 and 0.0 <= p["weight_decay"] <= 0.1
        assert p["seed"] in range(4) and isinstance(p["seed"], int)
        assert p["label_smoothing"] in (0.0, 0.1)
    logs = [math.log10(p["learning_rate"]) for p in a]
    assert max(logs) - min(logs) > 0.5  # spread in log space


LR = "learning_rate"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"grid": {"lerning_rate": [1e-3]}},
         "sweep.grid.lerning_rate: not a config key; did you mean 'learning_rate'?"),
        ({"grid": {LR: []}}, "sweep.grid.learning_rate is empty; give at least one value"),
        ({"grid": {}}, "sweep.grid is empty"),
        ({"grid": {LR: [1e-3, 1e-3]}}, "sweep.grid.learning_rate=[0.001, 0.001]: repeats a value"),
        ({"grid": {"batch_size": [32, 64]}, "execution": "population"},
         "sweep.grid.batch_size: changes the compiled program.*use sweep.execution = 'sequential'"),
        ({"grid": {"model_kwargs": {"embed_dim": [8, 16]}}, "execution": "population"},
         "sweep.grid.model_kwargs.embed_dim: changes the compiled program"),
        ({"grid": {"model_kwargs": {"widht": [8]}}}, "unknown SwinTransformer field"),
        ({"grid": {"model_kwargs": [{}]}}, "sweep.grid.model_kwargs: is a section"),
        ({"grid": {LR: [1e-3, -1.0]}},
         "sweep point {'learning_rate': -1.0}: config.learning_rate=-1.0: must be > 0"),
        ({"execution": "parallel"}, "sweep.execution='parallel': must be one of"),
        ({"mode": "bayes"}, "sweep.mode='bayes': must be one of"),
        ({"mode": "random", "random": {LR: ("uniform", 1e-3, 1e-2)}, "num_samples": 2},
         "sweep.grid is set but sweep.mode='random'"),
        ({"mode": "random", "grid": {}, "random": {LR: ("log_uniform", 0.0, 1e-2)},
          "num_samples": 3}, "log_uniform needs lo > 0"),
        ({"mode": "random", "grid": {}, "random": {LR: ("normal", 0.0, 1.0)}, "num_samples": 3},
         "sweep.random.learning_rate=('normal', 0.0, 1.0): not a distribution"),
        ({"mode": "random", "grid": {}, "random": {LR: ("uniform", 1e-3, 1e-2)}},
         "sweep.num_samples must be >= 1"),
        ({"population_size": -1}, "sweep.population_size=-1: must be an integer >= 0"),
    ],
)  # fmt: skip
def test_bad_sweep_configs_fail_before_anything_runs(tmp_path, fields, message) -> None:
    config = _config()
    for key, value in fields.items():
        config.sweep[key] = value
    workdir = tmp_path / "sweep"
    with pytest.raises(ValueError, match=_escape(message)):
        runner.run_sweep(config, workdir)
    assert not workdir.exists()


def test_a_sweep_that_fails_to_start_writes_nothing(tmp_path) -> None:
    workdir = tmp_path / "sweep"
    missing = _config(dataset="cifar100", data_dir=str(tmp_path / "tfds"), download=False)
    with pytest.raises(errors.DatasetNotFoundError):
        runner.run_sweep(missing, workdir)
    assert not workdir.exists()  # no sweep_config.json: the fixed command may use the workdir


def test_a_sweep_needs_a_validation_split(tmp_path) -> None:
    with pytest.raises(ValueError, match="config.val_split is empty"):
        runner.run_sweep(_config(val_split=""), tmp_path / "sweep")


def test_unknown_sweep_field_and_missing_section(tmp_path) -> None:
    config = _config()
    config.sweep.excution = "population"
    with pytest.raises(ValueError, match="sweep.excution: unknown field; did you mean 'execution'"):
        runner.run_sweep(config, tmp_path)
    with pytest.raises(ValueError, match="the config has no `sweep` section"):
        runner.run_sweep(make_tiny_config(), tmp_path)


def test_cli_reports_a_bad_sweep_config_with_status_2(tmp_path) -> None:
    cmd = [sys.executable, "-m", "swinjax.sweep", "--config", "experiments/sweep_demo.py",
           "--workdir", str(tmp_path / "w"), "--config.sweep.execution=bogus"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "error: sweep.execution='bogus': must be one of" in proc.stderr


# ------------------------------------------------------------------------------ running


@pytest.mark.slow
def test_rerun_skips_finished_points_and_runs_only_new_ones(tmp_path, monkeypatch) -> None:
    calls = _spy_train_points(monkeypatch)
    messages = []
    results = runner.run_sweep(_config(), tmp_path, log=messages.append)
    assert calls == [[{"learning_rate": 1e-3}], [{"learning_rate": 3e-3}]]
    first = _lines(tmp_path)
    assert [r["point"] for r in first] == [{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]
    for r in first:
        assert r["status"] == "ok" and r["steps"] == 16 and r["seconds"] > 0
        assert 0 <= r["best_val_top1"] <= r["best_val_top5"] <= 1
        assert r["final_loss"] == r["history"][-1]["train_loss"] and r["best_epoch"] == 1
        assert (r["execution"], r["population_size"]) == ("sequential", 1)
    assert [r["best_val_top1"] for r in results] == sorted(
        (r["best_val_top1"] for r in first), reverse=True
    )
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert (tmp_path / runner.CONFIG_FILE).is_file()
    assert "val_top1" in messages[-1]  # the summary table

    # The same sweep again: nothing trains, nothing is appended.
    calls.clear()
    messages.clear()
    again = runner.run_sweep(_config(progress_bar=True), tmp_path, log=messages.append)
    assert calls == [] and len(_lines(tmp_path)) == 2
    assert "skipping 2 of 2 points already in" in messages[0]
    assert again == results

    # One more value: only it trains.
    grid = {"learning_rate": [1e-3, 3e-3, 1e-2]}
    runner.run_sweep(_config(grid), tmp_path, log=messages.append)
    assert calls == [[{"learning_rate": 1e-2}]]
    assert [r["point"]["learning_rate"] for r in _lines(tmp_path)] == [1e-3, 3e-3, 1e-2]


def test_finished_points_are_recognised_after_a_key_is_added(tmp_path, monkeypatch) -> None:
    """A record carries its config: written by a release that lacked a key (simulated by taking
    the key out of the records), its point is still recognised as finished, the key taking the
    value the upgrade gives it; a record without a config keeps its written digest."""
    runner.run_sweep(_config(), tmp_path, log=lambda _: None)
    records = _lines(tmp_path)
    assert all(r["config_digest"] == runner.config_digest(r["config"]) for r in records)
    older = []
    for r in records:
        r["config"].pop("ema_decay")  # as if the key did not exist yet
        r["config_digest"] = "written-before"
        older.append(r)
    older[1].pop("config")  # a record of a release that wrote no config
    (tmp_path / runner.RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in older))
    calls = _spy_train_points(monkeypatch)
    runner.run_sweep(_config(), tmp_path, log=lambda _: None)
    assert calls == [[{"learning_rate": 3e-3}]]  # the record without a config trains again


def test_a_workdir_of_another_base_config_is_refused(tmp_path, monkeypatch) -> None:
    runner.run_sweep(_config({"learning_rate": [1e-3]}), tmp_path)
    with pytest.raises(ValueError, match=r"different base config \(weight_decay: 0.0001 -> 0.05\)"):
        runner.run_sweep(_config({"learning_rate": [1e-3]}, weight_decay=0.05), tmp_path)
    assert len(_lines(tmp_path)) == 1
    # A different base value of the swept key itself is fine: every point overrides it.
    calls = _spy_train_points(monkeypatch)
    runner.run_sweep(_config({"learning_rate": [1e-3]}, learning_rate=0.5), tmp_path)
    assert calls == []


@pytest.mark.slow
def test_population_matches_sequential(tmp_path, monkeypatch) -> None:
    grid = {"learning_rate": [1e-3, 4e-3], "seed": [0, 1]}
    seq = runner.run_sweep(_config(grid), tmp_path / "seq")
    calls = _spy_train_points(monkeypatch)
    config = _config(grid, "population")
    config.sweep.population_size = 2
    pop = runner.run_sweep(config, tmp_path / "pop")
    assert [len(c) for c in calls] == [2, 2]  # two populations of two (one compiled program)
    by_point = {space.point_id(r["point"]): r for r in seq}
    for p in pop:
        s = by_point[space.point_id(p["point"])]
        assert (p["execution"], p["population_size"]) == ("population", 2)
        assert p["steps"] == s["steps"] == 16
        for hp, hs in zip(p["history"], s["history"], strict=True):
            np.testing.assert_allclose(hp["train_loss"], hs["train_loss"], rtol=1e-4)
            np.testing.assert_allclose(hp["val_loss"], hs["val_loss"], rtol=1e-4)
            # 120 validation images: a near-tie logit may flip one of them at most.
            assert abs(hp["val_top1"] - hs["val_top1"]) <= 1 / 120 + 1e-9
    # The four models really differ (learning rate and seed both matter).
    assert len({round(r["history"][0]["val_loss"], 6) for r in seq}) == 4


@pytest.mark.slow
def test_three_learning_rates_compile_train_step_once(tmp_path, caplog) -> None:
    # A batch size no other test here uses, so train_step has never seen this shape.
    config = _config({"learning_rate": [1e-3, 3e-3, 1e-2]}, batch_size=72)
    before = steps.train_step._cache_size()
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        results = runner.run_sweep(config, tmp_path)
    assert len(results) == 3 and all(r["steps"] == 1080 // 72 for r in results)
    assert steps.train_step._cache_size() - before == 1
    compiles = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("Compiling jit(train_step)") for m in compiles) == 1, compiles


def test_a_diverging_point_is_recorded_and_the_others_go_on(tmp_path, monkeypatch) -> None:
    real = steps.train_step

    def nan_for_large_lr(state, batch):
        lr = float(state.hparams["learning_rate"])
        state, metrics = real(state, batch)
        if lr > 2e-3 and int(state.step) > 5:
            metrics = dict(metrics, loss=metrics["loss"] * np.nan)
        return state, metrics

    monkeypatch.setattr(steps, "train_step", nan_for_large_lr)
    results = runner.run_sweep(_config(), tmp_path)
    ok, bad = results  # the diverged point ranks last
    assert ok["status"] == "ok" and ok["point"] == {"learning_rate": 1e-3}
    assert bad["status"] == "diverged" and bad["diverged_at_step"] == 6
    assert bad["best_val_top1"] is None and bad["final_loss"] is None and bad["history"] == []
    assert "NaN" not in (tmp_path / runner.RESULTS_FILE).read_text()  # strict JSON


def _escape(message: str) -> str:
    for c in "()[]{}":
        message = message.replace(c, "\\" + c)
    return message
