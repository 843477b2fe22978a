"""Training loop: ``python -m swinjax.train --config experiments/NAME.py --workdir DIR``.

Override any config key on the command line: ``--config.num_epochs=5 --config.data_dir=DIR``.
Re-running the same command on the same workdir resumes from its latest checkpoint; data order
and randomness continue as if the run had never stopped. SIGTERM/SIGINT save a checkpoint and
exit cleanly.

The loop is thin: the jitted, module-level ``steps.train_step`` / ``steps.eval_step`` do the
work; metrics are fetched one step late so that the host never waits on the device. Training is
data parallel over every device (:mod:`swinjax.parallel`): batches split across a 1-D mesh, the
state replicated; ``--config.distributed=True`` makes it one process of a multi-host run.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from swinjax import checkpoint, data, evaluation, parallel, plots, runtime, steps
from swinjax.config import build_model, check_resumable, training_steps, validate_config

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Command-line flags, defined only when run as a program (modules stay importable together)."""
    config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
    flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and plots")


class _StopRequest:
    """SIGTERM/SIGINT set a flag; the loop saves at the next step boundary and leaves."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second signal: the user insists
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class MetricWriter:
    """``metrics.jsonl`` (one JSON object a line) plus TensorBoard event files in the workdir.

    ``enabled=False`` (every process but the first of a multi-host run): writes nothing.
    """

    def __init__(self, workdir: Path, enabled: bool = True):
        from tensorboardX import SummaryWriter

        self.path = workdir / "metrics.jsonl"
        self.tb = SummaryWriter(str(workdir / "tensorboard")) if enabled else None

    def write(self, step: int, kind: str, values: dict[str, float]) -> None:
        if self.tb is None:
            return
        record = {"step": int(step), "kind": kind, **{k: float(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in values.items():
            self.tb.add_scalar(f"{kind}/{k}", float(v), int(step))
        self.tb.flush()

    def records(self, kind: str) -> list[dict]:
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [r for r in rows if r["kind"] == kind]

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class _EpochMetrics:
    """Running sums of one epoch's step metrics, fetched one step late."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, pending: dict[str, jax.Array], step: int) -> dict[str, float]:
        """Fetches step ``step``'s metrics (stopping on NaN/Inf) and adds them up."""
        fetched = {k: float(v) for k, v in jax.device_get(pending).items()}
        steps.check_finite(fetched, step)
        for k, v in fetched.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        return fetched

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Trains (or resumes) the run in ``workdir``; returns the final metrics."""
    validate_config(config)
    parallel.initialize_distributed(config.get("distributed", False))  # before any device use
    mesh = parallel.make_mesh()  # every device of every process
    parallel.check_batch_size(config.batch_size, mesh.size)
    batch_sharding = parallel.batch_sharding(mesh)
    main_process = parallel.is_main_process()
    workdir = Path(workdir)
    check_resumable(workdir, config)  # a different run in this workdir is an error, not overwritten
    splits = data.load_splits(config)  # fails here, before compiling, if the dataset is missing
    train_split = splits["train"]
    model = build_model(config, train_split)
    steps_per_epoch, total_steps = training_steps(config, train_split.num_examples)

    workdir.mkdir(parents=True, exist_ok=True)
    if main_process:
        checkpoint.save_config(workdir, config)
    state = steps.create_train_state(config, model, steps_per_epoch=steps_per_epoch)
    state = parallel.replicate(state, mesh)  # restored checkpoints take the template's sharding
    ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints)
    writer = MetricWriter(workdir, enabled=main_process)
    restored = ckpt.restore_latest(state, report=logging.warning)
    epoch, epoch_step = 0, 0
    if restored is not None:
        state, meta = restored
        epoch, epoch_step = meta["epoch"], meta["epoch_step"]
        tqdm.write(f"resumed from step {int(state.step)} (epoch {epoch}, batch {epoch_step})")

    def save(meta_extra: dict | None = None, metrics: dict | None = None) -> None:
        meta = {"epoch": epoch, "epoch_step": epoch_step, **(meta_extra or {})}
        ckpt.save(int(jax.device_get(state.step)), state, meta, metrics)

    step = int(jax.device_get(state.step))
    stopped_by = None
    with _StopRequest() as stop:
        while epoch < config.num_epochs and step < total_steps and stopped_by is None:
            bar = tqdm(
                total=steps_per_epoch,
                initial=epoch_step,
                desc=f"epoch {epoch + 1}",
                unit="batch",
                dynamic_ncols=True,
                disable=not (config.progress_bar and main_process),
            )
            meter = _EpochMetrics()
            pending, t0 = None, time.perf_counter()
            batches = data.train_batches(
                train_split,
                config.batch_size,
                config.seed,
                epoch,
                start_step=epoch_step,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
            )
            for batch in data.prefetch_to_device(batches, size=2, sharding=batch_sharding):
                state, metrics = steps.train_step(state, batch)
                step += 1
                epoch_step += 1
                if pending is not None:  # one step late: the device is already on this step
                    fetched = meter.add(pending, step - 1)
                    seen = meter.count * config.batch_size
                    if (step - 1) % config.log_every_steps == 0:
                        writer.write(step - 1, "train_step", fetched)
                    bar.set_postfix(
                        loss=f"{fetched['loss']:.3f}",
                        top1=f"{fetched['top1']:.3f}",
                        img_s=f"{seen / (time.perf_counter() - t0):.0f}",
                    )
                pending = metrics
                bar.update(1)
                if stop.signal is not None:
                    stopped_by = signal.Signals(stop.signal).name
                    break
                if step >= total_steps:
                    stopped_by = stopped_by or ("max_steps" if config.max_steps > 0 else None)
                    break
            if pending is not None:
                meter.add(pending, step)
            bar.close()
            if epoch_step < steps_per_epoch:  # interrupted mid-epoch: save the position
                save()
                break
            seconds = time.perf_counter() - t0
            train_means = meter.means()
            epoch, epoch_step = epoch + 1, 0
            record = {f"train_{k}": v for k, v in train_means.items() if k != "learning_rate"}
            record["epoch_seconds"] = seconds
            if "val" in splits:
                t_val = time.perf_counter()
                val = evaluation.evaluate(
                    state, splits["val"], config.eval_batch_size or config.batch_size, mesh
                )
                record.update({f"val_{k}": v for k, v in val.items() if k != "num_examples"})
                record["val_seconds"] = time.perf_counter() - t_val
            record["epoch"] = epoch
            writer.write(step, "epoch", record)
            if main_process:
                summary = json.dumps({k: round(v, 4) for k, v in record.items()})
                tqdm.write(f"epoch {epoch}: {summary}")
            last = epoch >= config.num_epochs or step >= total_steps
            if last or epoch % config.checkpoint_every_epochs == 0:
                best = {"val_top1": record["val_top1"]} if "val_top1" in record else None
                save(metrics=best)

    result: dict[str, Any] = {"step": step, "epoch": epoch, "stopped_by": stopped_by}
    if stopped_by not in (None, "max_steps"):
        logging.warning(
            "stopped by %s at step %d; re-run the same command to resume", stopped_by, step
        )
        writer.close()
        ckpt.close()
        return result
    history = writer.records("epoch") if main_process else []
    if history:
        plots.plot_history(history, workdir / "history.png")
    if "test" in splits:
        test = evaluation.evaluate(
            state, splits["test"], config.eval_batch_size or config.batch_size, mesh
        )
        writer.write(step, "test", test)
        result["test"] = test
        images, labels, predicted = evaluation.predict_samples(  # every process: SPMD
            state, splits["test"], config.num_sample_images
        )
        if main_process:
            plots.plot_predictions(
                images, labels, predicted, splits["test"].class_names, workdir / "test_samples.png"
            )
    writer.close()
    ckpt.close()
    return result


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.workdir is None or FLAGS.config is None:
        raise app.UsageError("both --config and --workdir are required")
    logging.set_verbosity(logging.WARNING)  # orbax and tfds are chatty at INFO
    try:
        result = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (ValueError, FileNotFoundError, checkpoint.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    runtime.reexec_with_hugepages()
    define_flags()
    app.run(main)
