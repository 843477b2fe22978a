"""A training run in a workdir: set-up, epochs, validation, checkpoints, signals, plots and the
final test evaluation (``python -m swinjax.train`` is this module's command line).

Re-running the same command on the same workdir resumes from its latest checkpoint; data order
and randomness continue as if the run had never stopped. A re-run may change only the keys that
do not change the computation (``config.RESUMABLE``); a changed ``num_epochs`` extends (or
shortens) the run, and the learning-rate schedule is re-planned for the new length from the
current step on (said at start).

SIGTERM/SIGINT save a checkpoint at the next step and exit cleanly; in a multi-host run
(``--config.distributed=True``) every process stops and saves at the same step, agreed through
JAX's preemption sync point. Checkpoints are written in the background while training goes on.

Set-up is :func:`swinjax.training.setup.setup_run` and the loop :mod:`swinjax.training.loop`
(both shared with sweeps, the benchmark and evaluation); this module restores or initializes the
state, opens the workdir's outputs once that has succeeded, and decides what happens at the end of
each epoch (validation, metrics, checkpoint) and at the end (plots, test evaluation, sample
predictions). The workdir gets ``config.json``, ``classes.json`` (the class names) and, where
image files were left out as unreadable, ``bad_images.txt``.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
from tqdm import tqdm

from swinjax import config as config_lib
from swinjax import weights
from swinjax.data import screening
from swinjax.training import checkpoint, evaluation, loop, parallel, plots, sharding, writers
from swinjax.training.setup import Run, setup_run
from swinjax.training.workdir import (
    CONFIG_FILE,
    check_workdir,
    class_names,
    save_bad_images,
    save_class_names,
    save_config,
)


@dataclasses.dataclass
class _Outputs:
    """Where a run writes, opened once set-up has succeeded: checkpoints and metric writers."""

    workdir: Path
    ckpt: checkpoint.Checkpointer
    writer: Any


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Trains (or resumes) the run in ``workdir``; returns the final metrics.

    Nothing is written until the run is set up (:func:`swinjax.training.setup.setup_run`), its
    state restored or loaded from ``init_from``: a command that fails before training leaves the
    workdir as it was, so the corrected command may use it."""
    workdir = Path(workdir)
    t_setup = time.perf_counter()
    run = setup_run(config, checks=[lambda c: check_run_workdir(workdir, c)])
    state, start = _initial_state(run, workdir)
    out = _open_outputs(run, workdir)
    progress = _Progress(run)
    meter = loop.Meter()
    try:
        with _StopRequest(enabled=not jax.distributed.is_initialized()) as stop:

            def should_stop(step: int) -> str | None:
                if not stop.enabled:  # multi-host: every process stops at the agreed step
                    return "preemption" if out.ckpt.reached_preemption(step) else None
                return stop.reason()

            state, pos, reason = loop.run_epochs(
                state,
                run.plan,
                start,
                meter,
                start_epoch=progress.start_epoch,
                end_epoch=lambda s, p: _end_epoch(run, out, s, p, meter, progress),
                actions=[_first_step(out, t_setup), *_actions(run, out, meter, progress)],
                should_stop=should_stop,
                sharding=parallel.batch_sharding(run.mesh),
            )
        progress.close()
        if reason is not None:  # stopped before the plan's end: keep the position
            _save(out, state, pos)
        return _finish(run, out, state, pos, reason)
    finally:
        progress.close()  # the bar's line ends before an error's message
        out.writer.close()
        out.ckpt.close()  # waits for a save in flight


def check_run_workdir(workdir: Path, config: ml_collections.ConfigDict) -> None:
    """A different run in this workdir is an error, not overwritten (only
    :data:`swinjax.config.RESUMABLE` keys may differ)."""
    check_workdir(
        workdir,
        config,
        config_lib.saved_config(workdir / CONFIG_FILE),
        ignore=config_lib.RESUMABLE,
        holds="a run with a different config",
        fix="use a new --workdir, or the same config to resume it",
    )


def _open_outputs(run: Run, workdir: Path) -> _Outputs:
    """The workdir with the run's config and class names, its checkpoint directory and writers."""
    workdir.mkdir(parents=True, exist_ok=True)
    if run.main_process:
        save_config(workdir, run.config)
        save_class_names(workdir, class_names(run.splits["train"]))
        _save_bad_images(workdir, run)
    ckpt = checkpoint.Checkpointer(workdir, keep=run.config.keep_checkpoints)
    return _Outputs(workdir, ckpt, writers.create_writer(workdir, enabled=run.main_process))


def _save_bad_images(workdir: Path, run: Run) -> None:
    """``bad_images.txt``: the unreadable image files left out of the run's splits."""
    bad = screening.left_out(run.splits.values())
    path = save_bad_images(workdir, bad)
    if path is not None:
        tqdm.write(f"{len(bad)} unreadable image files left out of the run, listed in {path}")


def _initial_state(run: Run, workdir: Path) -> tuple[Any, loop.Position]:
    """The latest checkpoint's state and position, or the new run's state at the start (with
    ``init_from``'s weights); a changed run length re-plans the schedule
    (``hparams["total_steps"]``) from the current step on. Reads only."""
    state = run.take_state()
    if not checkpoint.saved_steps(workdir):  # a new run: only then does init_from apply
        return (_init_from(run, state) if run.config.init_from else state), loop.Position()
    state, meta = checkpoint.restore(workdir, "latest", state, report=tqdm.write)
    step = int(jax.device_get(state.step))
    tqdm.write(f"resumed from step {step} (epoch {meta['epoch']}, batch {meta['epoch_step']})")
    planned = run.plan.steps_per_epoch * run.plan.num_epochs
    before = int(jax.device_get(state.hparams["total_steps"]))
    if before != planned:
        hparams = dict(state.hparams, total_steps=jax.numpy.float32(planned))
        state = state.replace(hparams=parallel.replicate(hparams, run.mesh))
        tqdm.write(
            f"num_epochs is now {run.plan.num_epochs}: the {state.schedule!r} schedule is "
            f"re-planned for {planned} steps (was {before}); from step {step} on the learning "
            f"rate follows the {planned}-step schedule"
        )
    return state, loop.Position(step, meta["epoch"], meta["epoch_step"])


def _init_from(run: Run, state: Any) -> Any:
    """``state`` with the parameters of ``config.init_from``, adapted to the model; prints what
    was loaded, resized, re-initialised and left unused."""
    source = checkpoint.weights_source(run.config.init_from)
    params, report = weights.load_pretrained(
        source,
        state.model,
        reset_head=run.config.init_head == "reset",
        init_params=jax.device_get(state.params),
    )
    report.source = run.config.init_from
    if run.main_process:
        tqdm.write(weights.format_report(report))
    return state.replace(params=sharding.place(params, run.mesh, run.config.sharding))


def _end_epoch(
    run: Run, out: _Outputs, state: Any, pos: loop.Position, meter: loop.Meter, progress: Any
) -> bool:
    """Validation, the epoch's metrics, a checkpoint at the configured cadence."""
    progress.end_epoch()
    record = {f"train_{k}": v for k, v in meter.means().items() if k != "learning_rate"}
    record["epoch_seconds"] = progress.epoch_seconds
    if "val" in run.splits:
        t0 = time.perf_counter()
        val = evaluation.evaluate_for_config(state, run.splits["val"], run.config, run.mesh)
        record.update({f"val_{k}": v for k, v in val.items() if k != "num_examples"})
        record["val_seconds"] = time.perf_counter() - t0
    record["epoch"] = pos.epoch
    out.writer.write_scalars(pos.step, writers.with_kind("epoch", record))
    if run.main_process:
        tqdm.write(f"epoch {pos.epoch}: {json.dumps({k: round(v, 4) for k, v in record.items()})}")
    last = pos.epoch >= run.plan.num_epochs or pos.step >= run.plan.total_steps
    if last or pos.epoch % run.config.checkpoint_every_epochs == 0:
        best = {k: record[k] for k in checkpoint.BEST_METRICS if k in record} or None
        _save(out, state, pos, best)
    return False


def _save(out: _Outputs, state: Any, pos: loop.Position, metrics: dict | None = None) -> None:
    meta = {"epoch": pos.epoch, "epoch_step": pos.epoch_step}
    out.ckpt.save(pos.step, state, meta, metrics)


def _finish(
    run: Run, out: _Outputs, state: Any, pos: loop.Position, reason: str | None
) -> dict[str, Any]:
    """The result; at the end of the plan also the history plot, test score and samples."""
    if reason is None and run.config.max_steps and pos.step >= run.config.max_steps:
        reason = "max_steps"
    result: dict[str, Any] = {"step": pos.step, "epoch": pos.epoch, "stopped_by": reason}
    if reason not in (None, "max_steps"):
        tqdm.write(f"stopped by {reason} at step {pos.step}; re-run the same command to resume")
        return result
    out.writer.flush()
    history = writers.read_records(out.workdir, "epoch") if run.main_process else []
    if history:
        plots.plot_history(history, out.workdir / "history.png")
    if "test" in run.splits:
        test_split = run.splits["test"]
        test = evaluation.evaluate_for_config(state, test_split, run.config, run.mesh)
        out.writer.write_scalars(pos.step, writers.with_kind("test", test))
        result["test"] = test
        images, labels, predicted = evaluation.predict_samples(  # every process: SPMD
            state, test_split, run.config.num_sample_images
        )
        if run.main_process:
            path = out.workdir / "test_samples.png"
            plots.plot_predictions(images, labels, predicted, class_names(test_split), path)
    return result


# ------------------------------------------------------------------- progress and signals


class _Progress:
    """A tqdm bar per epoch (loss, top-1, images/s), and the epoch's wall time."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.bar: tqdm | None = None
        self.t0 = time.perf_counter()
        self.epoch_seconds = 0.0
        self.steps = 0

    def start_epoch(self, pos: loop.Position) -> None:
        self.t0, self.steps = time.perf_counter(), 0
        self.bar = tqdm(
            total=self.run.plan.steps_per_epoch,
            initial=pos.epoch_step,
            desc=f"epoch {pos.epoch + 1}",
            unit="batch",
            dynamic_ncols=True,
            disable=not (self.run.config.progress_bar and self.run.main_process),
        )

    def __call__(self, meter: loop.Meter) -> None:
        self.steps += 1
        seconds = time.perf_counter() - self.t0
        last = meter.last
        self.bar.set_postfix(
            loss=f"{last['loss'][0]:.3f}",
            top1=f"{last['top1'][0]:.3f}",
            img_s=f"{self.steps * self.run.plan.batch_size / seconds:.0f}",
        )
        self.bar.update(1)

    def end_epoch(self) -> None:
        self.epoch_seconds = time.perf_counter() - self.t0
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _actions(run: Run, out: _Outputs, meter: loop.Meter, progress: _Progress) -> list:
    """After each fetched step: the progress bar; every ``log_every_steps`` the step's metrics;
    every minute clu's steps/s and ETA report."""
    from clu import periodic_actions

    def log_step(step: int, t: float) -> None:
        values = {k: float(v[0]) for k, v in meter.last.items()}
        out.writer.write_scalars(step, writers.with_kind("train_step", values))

    every = run.config.log_every_steps
    return [
        lambda step: progress(meter),
        periodic_actions.PeriodicCallback(every_steps=every, callback_fn=log_step),
        periodic_actions.ReportProgress(num_train_steps=run.plan.total_steps, writer=out.writer),
    ]


def _first_step(out: _Outputs, start: float) -> Callable[[int], None]:
    """An action that logs, once, the seconds from the start of set-up to the end of this
    process's first train step (compile included): ``first_step_s`` of kind ``start``."""
    done = []

    def log_first_step(step: int) -> None:
        if not done:
            done.append(step)
            seconds = time.perf_counter() - start
            out.writer.write_scalars(step, writers.with_kind("start", {"first_step_s": seconds}))

    return log_first_step


class _StopRequest:
    """SIGTERM/SIGINT set a flag; the loop saves at the next step boundary and leaves. A second
    signal raises KeyboardInterrupt. ``enabled=False`` (multi-host runs, where JAX's preemption
    service owns SIGTERM and every process must stop at the same step) installs nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT) if self.enabled else ():
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second signal: the user insists
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.signal = signum

    def reason(self) -> str | None:
        return None if self.signal is None else signal.Signals(self.signal).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
