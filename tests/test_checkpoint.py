"""Checkpointer: asynchronous saves under donation, failed and killed writes, and which restore
errors fall back to an older step (bad checkpoints) or propagate (everything else)."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from orbax.checkpoint._src.checkpointers import async_checkpointer

from swinjax import data, errors
from swinjax.config import build_model
from swinjax.training import checkpoint, steps
from swinjax.training import state as state_lib
from swinjax.training import workdir as workdir_lib
from tests.conftest import REPO, make_tiny_config, over_versions

TMP_SUFFIX = ".orbax-checkpoint-tmp"


def _host(tree) -> list[np.ndarray]:
    """Host copies of the leaves of ``tree`` (typed PRNG keys as their raw data)."""
    return [
        np.array(jax.random.key_data(x) if checkpoint._is_key(x) else x)
        for x in jax.tree.leaves(tree)
    ]


def _assert_bitwise_equal(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _tmp_dirs(workdir: Path) -> list[Path]:
    ckpts = workdir / workdir_lib.CHECKPOINT_DIR
    return sorted(p for p in ckpts.glob(f"*{TMP_SUFFIX}*")) if ckpts.is_dir() else []


def _template(config):
    split = data.load_split(config, config.train_split)
    return state_lib.create_train_state(config, build_model(config, split), steps_per_epoch=1)


# ------------------------------------------------------------------------------ async saves


@pytest.mark.slow
def test_async_save_in_flight_while_donating_steps_continue(tmp_path, monkeypatch) -> None:
    """Two saves, each held uncommitted (a gate in orbax's commit callback) while the next train
    steps donate the saved state and its buffers are deleted, as an accelerator's donation does
    (on the CPU, JAX copies instead while orbax holds a host view). The checkpoints equal the
    states at save time and the final state equals a run without saves, bitwise."""
    arrived, gate = threading.Semaphore(0), threading.Semaphore(0)
    commit = async_checkpointer._on_commit_callback

    def gated_commit(*args, **kwargs):  # the files are written; the rename into place waits
        arrived.release()
        assert gate.acquire(timeout=120), "the test never released the commit"
        return commit(*args, **kwargs)

    monkeypatch.setattr(async_checkpointer, "_on_commit_callback", gated_commit)
    config = make_tiny_config()
    split = data.load_split(config, config.train_split)
    model = build_model(config, split)
    batches = list(data.train_batches(split, config.batch_size, config.seed, 0))[:6]

    def train(ckpt: checkpoint.Checkpointer | None, save_at=(2, 4)) -> tuple:
        state = state_lib.create_train_state(config, model, steps_per_epoch=16)
        saved = {}
        for i, batch in enumerate(batches):
            if ckpt is not None and i in save_at:
                saved[i] = _host(state)
                ckpt.save(i, state, {"i": i})
                donated = jax.tree.leaves(state)
            state, _ = steps.train_step(state, jax.device_put(batch))
            if ckpt is not None and i in save_at:
                for x in donated:  # gone, as after a donation on an accelerator
                    if not x.is_deleted():
                        x.delete()
            if ckpt is not None and i - 1 in save_at:  # two steps later: still not committed
                jax.block_until_ready(state)
                assert arrived.acquire(timeout=120), "the background write never finished"
                assert not (ckpt.directory / str(i - 1)).exists()
                assert (ckpt.directory / f"{i - 1}{TMP_SUFFIX}").exists()
                gate.release()
        return state, saved

    ckpt = checkpoint.Checkpointer(tmp_path)
    assert ckpt.reached_preemption(3) is False  # jax.distributed is not initialized
    with_saves, saved = train(ckpt)
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [2, 4] and not _tmp_dirs(tmp_path)
    template = _template(config)
    for i, host_state in saved.items():
        restored, meta = ckpt.restore(i, template)
        assert meta == {"i": i}
        _assert_bitwise_equal(_host(restored), host_state)
    ckpt.close()
    without_saves, _ = train(None)
    _assert_bitwise_equal(_host(with_saves), _host(without_saves))


def test_failed_background_write_raises_is_not_listed_and_is_cleaned(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    state = {"w": jnp.arange(8.0), "step": jnp.int32(3)}
    monkeypatch.setattr(async_checkpointer, "_on_commit_callback", disk_full)
    ckpt = checkpoint.Checkpointer(tmp_path)
    ckpt.save(3, state, {"epoch": 0})
    with pytest.raises(errors.CheckpointError, match="checkpoints/3 failed.*No space left"):
        ckpt.wait_until_finished()
    monkeypatch.undo()
    assert ckpt.all_steps() == [] and ckpt.restore_latest(state) is None
    ckpt.close()
    assert [p.name for p in _tmp_dirs(tmp_path)] == [f"3{TMP_SUFFIX}"]
    assert checkpoint.Checkpointer(tmp_path, read_only=True).all_steps() == []
    ckpt = checkpoint.Checkpointer(tmp_path)  # a writer removes what the failed save left
    ckpt.save(4, state, {"epoch": 1})
    ckpt.close()
    assert not _tmp_dirs(tmp_path)
    restored, meta = checkpoint.Checkpointer(tmp_path, read_only=True).restore_latest(state)
    assert meta == {"epoch": 1} and int(restored["step"]) == 3


# ------------------------------------------------------------------- bad checkpoints fall back


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory) -> tuple[Path, Path, object]:
    """``good``: steps 1 and 2 of a tiny train state; ``other``: step 2 of a different tree."""
    root = tmp_path_factory.mktemp("saved")
    template = _template(make_tiny_config())
    ckpt = checkpoint.Checkpointer(root / "good")
    for step in (1, 2):
        ckpt.save(step, template.replace(step=jnp.int32(step)), {"step": step})
    ckpt.close()
    other = template.replace(hparams={**template.hparams, "extra": jnp.float32(1)})
    ckpt = checkpoint.Checkpointer(root / "other")
    ckpt.save(2, other, {"step": 2})
    ckpt.close()
    return root / "good", root / "other", template


def _state_files(step_dir: Path, sub: str = "state") -> list[Path]:
    return sorted(f for f in (step_dir / sub).rglob("*") if f.is_file())


def _largest_array_file(step_dir: Path) -> Path:
    return max((step_dir / "state" / "ocdbt.process_0" / "d").iterdir(), key=os.path.getsize)


def _garbage(d: Path) -> None:
    for f in _state_files(d):
        f.write_bytes(b"\0garbage")


def _halve_every_file(d: Path) -> None:
    for f in _state_files(d):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _truncate_array_data(d: Path) -> None:
    f = _largest_array_file(d)
    f.write_bytes(f.read_bytes()[:100])


def _flip_index_byte(d: Path) -> None:
    for f in (d / "state" / "d").iterdir():  # the OCDBT b-tree nodes (checksummed)
        b = bytearray(f.read_bytes())
        b[len(b) // 2] ^= 0xFF
        f.write_bytes(bytes(b))


def _empty_step_dir(d: Path) -> None:
    for p in d.iterdir():
        if p.is_dir():
            shutil.rmtree(p)


def _garble(path: Path, text: str = "{not json") -> None:
    path.write_text(text)


# name -> (corruption of checkpoints/2, the error chain restoring it raises, innermost last)
CORRUPTIONS = {
    "garbage_in_every_state_file": (_garbage, ["JSONDecodeError"]),
    "every_state_file_truncated": (_halve_every_file, ["JSONDecodeError"]),
    "array_data_truncated": (_truncate_array_data, ["Exception", "ValueError"]),
    "array_data_deleted": (lambda d: _largest_array_file(d).unlink(), ["Exception", "ValueError"]),
    "index_deleted": (lambda d: shutil.rmtree(d / "state" / "d"), ["ValueError"]),
    "index_garbled": (_flip_index_byte, ["ValueError"]),
    "state_dir_deleted": (lambda d: shutil.rmtree(d / "state"), ["KeyError"]),
    "step_dir_emptied": (_empty_step_dir, ["KeyError"]),
    "metadata_garbled": (lambda d: _garble(d / "state" / "_METADATA"), ["JSONDecodeError"]),
    "metadata_empty": (lambda d: _garble(d / "state" / "_METADATA", ""), ["JSONDecodeError"]),
    "metadata_without_tree": (
        lambda d: _garble(d / "state" / "_METADATA", '{"a": 1}'),
        ["KeyError"],
    ),
    "meta_file_deleted": (lambda d: (d / "meta" / "metadata").unlink(), ["FileNotFoundError"]),
    "meta_file_garbled": (lambda d: _garble(d / "meta" / "metadata"), ["JSONDecodeError"]),
    "other_tree": (None, ["ValueError"]),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_bad_latest_checkpoint_falls_back(name, saved_runs, tmp_path) -> None:
    good, other, template = saved_runs
    corrupt, chain = CORRUPTIONS[name]
    shutil.copytree(good, tmp_path, dirs_exist_ok=True)
    step_dir = tmp_path / workdir_lib.CHECKPOINT_DIR / "2"
    if corrupt is None:  # a checkpoint of another tree in place of step 2
        shutil.rmtree(step_dir)
        shutil.copytree(other / workdir_lib.CHECKPOINT_DIR / "2", step_dir)
    else:
        corrupt(step_dir)
    ckpt = checkpoint.Checkpointer(tmp_path, read_only=True)
    with pytest.raises(Exception) as raised:
        ckpt.restore(2, template)
    found, e = [], raised.value
    while e is not None:
        found.append(type(e).__name__)
        e = e.__cause__
    assert found == chain and checkpoint.is_bad_checkpoint(raised.value)
    reports = []
    state, meta = ckpt.restore_latest(template, report=reports.append)
    assert meta == {"step": 1} and int(state.step) == 1
    assert len(reports) == 1 and "checkpoints/2 is unreadable" in reports[0]


def _orbax_wrapped(cause: BaseException) -> Exception:
    """How orbax reraises a failed array read: a bare Exception caused by the original."""
    wrapper = Exception("Encountered error while reading array index: (slice(0, 32, 1),)")
    wrapper.__cause__ = cause
    return wrapper


@pytest.mark.parametrize(
    "error",
    [
        MemoryError("out of memory"),
        RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"),
        RuntimeError("a bug"),
        ValueError("RESOURCE_EXHAUSTED: tensorstore could not allocate"),
        ValueError("PERMISSION_DENIED: Error opening file"),
        PermissionError(13, "Permission denied"),
        _orbax_wrapped(MemoryError("host allocation failed")),
    ],
    ids=lambda e: f"{type(e).__name__}-{type(e.__cause__).__name__}-{str(e)[:20]}",
)
def test_other_restore_errors_propagate(error, saved_runs, monkeypatch) -> None:
    good, _, template = saved_runs
    ckpt = checkpoint.Checkpointer(good, read_only=True)

    def failing_restore(*args, **kwargs):
        raise error

    monkeypatch.setattr(ckpt.manager, "restore", failing_restore)
    reports = []
    with pytest.raises(BaseException) as raised:
        ckpt.restore_latest(template, report=reports.append)
    assert raised.value is error and not checkpoint.is_bad_checkpoint(error)
    assert reports == []  # no fallback was tried


# ------------------------------------------------------------ choosing a checkpoint: restore


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, saved_runs) -> tuple[Path, object]:
    """Steps 1-3 of a tiny train state: 1 and 2 with validation scores (2's EMA the best), 3
    saved without (a stop mid-epoch)."""
    _, _, template = saved_runs
    root = tmp_path_factory.mktemp("scored")
    ckpt = checkpoint.Checkpointer(root, keep=3)
    scores = {1: {"val_top1": 0.5}, 2: {"val_top1": 0.4, "val_ema_top1": 0.7}, 3: None}
    for step, metrics in scores.items():
        ckpt.save(step, template.replace(step=jnp.int32(step)), {"step": step}, metrics)
    ckpt.close()
    return root, template


def test_restore_chooses_the_latest_the_best_or_a_step(scored_run) -> None:
    root, template = scored_run
    assert checkpoint.saved_steps(root) == [1, 2, 3]
    for which, step in (("latest", 3), ("best", 2), (1, 1)):
        state, meta = checkpoint.restore(root, which, template)
        assert int(state.step) == step and meta == {"step": step}, which
    params, meta = checkpoint.restore(root, "latest")  # no template: the parameters alone
    assert meta == {"step": 3} and all(isinstance(x, np.ndarray) for x in jax.tree.leaves(params))
    _assert_bitwise_equal(_host(params), _host(template.params))
    with pytest.raises(
        errors.CheckpointError, match=r"step 9 is not among the saved steps \[1, 2, 3\]"
    ):
        checkpoint.restore(root, 9, template)


def test_restore_names_what_is_missing_or_does_not_fit(saved_runs, tmp_path) -> None:
    good, other, template = saved_runs
    with pytest.raises(
        errors.CheckpointError, match=r"has validation metrics \(saved steps: \[1, 2\]\)"
    ):
        checkpoint.restore(good, "best", template)
    with pytest.raises(errors.CheckpointError, match=r"checkpoints/2 cannot be restored"):
        checkpoint.restore(other, 2, template)  # another tree than the template's
    with pytest.raises(errors.CheckpointError, match="holds no checkpoint"):
        checkpoint.restore(tmp_path, "latest", template)
    assert checkpoint.saved_steps(tmp_path / "absent") == []
    assert list(tmp_path.iterdir()) == []  # readers create nothing
    timm = checkpoint.weights_source(str(good / workdir_lib.CHECKPOINT_DIR / "1"))
    assert "patch_embed.proj.weight" in timm  # a step's parameters, in timm's layout
    (tmp_path / workdir_lib.CONFIG_FILE).write_text("{}")  # a workdir whose run saved nothing
    with pytest.raises(errors.CheckpointError, match=r"init_from='.*': .* holds no checkpoint"):
        checkpoint.weights_source(str(tmp_path))


def test_reading_and_saving_without_metrics_log_no_orbax_warnings(tmp_path, caplog) -> None:
    """A reader is not orbax's read_only manager (which warns on every open), and a save
    without validation metrics records {} (orbax warns about a save without metrics)."""
    state = {"w": jnp.arange(8.0), "step": jnp.int32(3)}
    with caplog.at_level(logging.WARNING):
        writer = checkpoint.Checkpointer(tmp_path)
        writer.save(3, state, {"epoch": 0})  # a stop mid-epoch: no validation metrics
        writer.close()
        reader = checkpoint.Checkpointer(tmp_path, read_only=True)
        assert reader.all_steps() == [3] and reader.best_step() is None
        restored, _ = checkpoint.restore(tmp_path, "latest", state)
        reader.close()
    assert int(restored["step"]) == 3
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    with pytest.raises(ValueError, match="opened read-only"):
        reader.save(4, state, {"epoch": 0})


# ----------------------------------------------------------------------------- kill -9 runs

STEPS_PER_EPOCH = 16  # experiments/demo.py: 1080 train examples // batch 64
CLI_FLAGS = [
    "--config.num_epochs=3",
    "--config.checkpoint_every_epochs=1",
    "--config.log_every_steps=1",  # a train_step record per step: the test sees the progress
    "--config.num_sample_images=2",
]


class _Launch:
    """One run of ``python -m swinjax.train`` on ``workdir`` (tiny_test as Swin ``version`` 1 or
    2), stderr to a log file."""

    def __init__(self, workdir: Path, log: Path, version: int = 1):
        self.workdir, self.log = workdir, log
        metrics = workdir / "metrics.jsonl"
        self.metrics_offset = metrics.stat().st_size if metrics.exists() else 0
        config = workdir / workdir_lib.CONFIG_FILE
        self.config_mtime = config.stat().st_mtime_ns if config.exists() else -1
        self.started_ns = time.time_ns()
        cmd = [sys.executable, "-m", "swinjax.train", "--config", str(REPO / "experiments/demo.py")]
        cmd += ["--workdir", str(workdir), "--config.progress_bar=False", *CLI_FLAGS]
        cmd += [f"--config.model_kwargs.version={version}"]
        env = {
            **os.environ,
            # No re-execution with GLIBC_TUNABLES at startup: it keeps the PID (os.execv), so
            # killing would work either way, but it imports everything twice (~2 s a launch).
            "SWINJAX_RUNTIME_TUNING": "0",
            # Every launch after the first loads its executables instead of compiling them.
            "JAX_COMPILATION_CACHE_DIR": str(log.parent / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        }
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err
            )

    def new_records(self, kind: str = "train_step") -> list[dict]:
        """This launch's complete lines of metrics.jsonl of ``kind``."""
        metrics = self.workdir / "metrics.jsonl"
        if not metrics.exists():
            return []
        with metrics.open("rb") as f:
            f.seek(self.metrics_offset)
            lines = f.read().decode().split("\n")[:-1]  # the last one may be half-written
        rows = [json.loads(line) for line in lines if line.strip()]
        return [r for r in rows if r["kind"] == kind]

    def config_written(self) -> bool:
        config = self.workdir / workdir_lib.CONFIG_FILE
        return config.exists() and config.stat().st_mtime_ns != self.config_mtime

    def new_tmp_dirs(self) -> list[Path]:
        return [p for p in _tmp_dirs(self.workdir) if p.stat().st_mtime_ns >= self.started_ns]

    def kill_when(self, ready, delay_s: float = 0.0, timeout_s: float = 180) -> bool:
        """SIGKILLs the run ``delay_s`` after ``ready()`` first holds (polled every ~2 ms);
        False if the run ended first."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            try:
                hit = ready()
            except (FileNotFoundError, json.JSONDecodeError):  # a file being (re)written
                hit = False
            if hit:
                time.sleep(delay_s)
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=60)
                return True
            assert time.monotonic() < deadline, f"stuck: {self.log.read_text()[-2000:]}"
            time.sleep(0.002)
        return False

    def finish(self, timeout_s: float = 300) -> None:
        rc = self.proc.wait(timeout=timeout_s)
        assert rc == 0, self.log.read_text()[-3000:]


def _kill_during_startup(workdir: Path, log: Path, rng: random.Random, version: int) -> bool:
    """Killed after config.json is written (once the run is set up and its state initialized:
    the train step is compiled or loaded from the cache next) and before any train step is
    recorded."""
    run = _Launch(workdir, log, version)
    assert run.kill_when(run.config_written, delay_s=rng.uniform(0.0, 0.2)), "run ended"
    return not run.new_records()


def _kill_mid_epoch(workdir: Path, log: Path, rng: random.Random, version: int) -> bool:
    """Killed while the train steps of an epoch run: after its record of step s (one step late,
    so the host is on step s + 1 or s + 2) with s % 16 <= 13, before the epoch's end."""
    offset = rng.randint(2, 12)
    run = _Launch(workdir, log, version)

    def reached_offset() -> bool:
        return any(r["step"] % STEPS_PER_EPOCH == offset for r in run.new_records())

    assert run.kill_when(reached_offset), "run ended"
    last = max(r["step"] for r in run.new_records())
    saved = checkpoint.Checkpointer(workdir, read_only=True).all_steps()
    beyond_last_save = not saved or saved[-1] < last
    return last % STEPS_PER_EPOCH <= 13 and beyond_last_save and not run.new_tmp_dirs()


def _kill_during_write(workdir: Path, log: Path, rng: random.Random, version: int) -> bool:
    """Killed while orbax writes a checkpoint: after its temporary directory appears; true only
    if that directory is still there after the kill (never renamed into place)."""
    run = _Launch(workdir, log, version)
    assert run.kill_when(run.new_tmp_dirs, delay_s=rng.uniform(0.0, 0.03)), "run ended"
    left = run.new_tmp_dirs()
    if not left:
        return False
    step = int(left[0].name.split(".")[0])
    assert step not in checkpoint.Checkpointer(workdir, read_only=True).all_steps()
    return True


@pytest.mark.slow
@over_versions
def test_kill9_at_random_moments_then_resume_equals_uninterrupted(tmp_path, version) -> None:
    """An uninterrupted run; then SIGKILL during startup, mid-epoch and during a checkpoint
    write (in that order, at moments drawn from a seeded generator; a kind whose moment was
    missed is retried, at most 3 launches each) and a run to the end: it equals the
    uninterrupted run bitwise, and no temporary directory is left."""
    reference = tmp_path / "reference"
    _Launch(reference, tmp_path / "reference.log", version).finish()  # fills the cache too
    rng = random.Random(1234)
    workdir = tmp_path / "killed"
    kills = [_kill_during_startup, _kill_mid_epoch, _kill_during_write]
    for n, kill in enumerate(kills):
        for attempt in range(3):
            if kill(workdir, tmp_path / f"kill{n}.{attempt}.log", rng, version):
                break
        else:
            pytest.fail(f"{kill.__name__}: missed its moment 3 times")
    _Launch(workdir, tmp_path / "final.log", version).finish()
    assert not _tmp_dirs(workdir)
    template = _template(workdir_lib.load_config(reference))
    assert template.model.version == version  # the family the runs were launched with
    reports = []
    a, meta_a = checkpoint.Checkpointer(reference, read_only=True).restore_latest(template)
    b, meta_b = checkpoint.Checkpointer(workdir, read_only=True).restore_latest(
        template, report=reports.append
    )
    assert reports == [] and meta_a == meta_b and int(a.step) == int(b.step) == 48
    _assert_bitwise_equal(_host(a), _host(b))  # params, optimizer state, step, rng, hparams
