"""Hyperparameter sweeps: ``python -m swinjax.sweep --config experiments/SWEEP.py --workdir DIR``.

The config file is a training config plus a ``sweep`` section (:mod:`swinjax.search`). Each
point trains from scratch with the building blocks of ``swinjax.train``
(``steps.create_train_state``, the jitted ``steps.train_step``, ``evaluation.evaluate`` on the
validation split after every epoch), without checkpoints: a point is the unit of resumption.

- ``sweep.execution = "sequential"``: one point after another through ``steps.train_step``.
  Points that differ only in array hyperparameters or the seed share its one compiled program.
- ``"population"``: K points (all, or ``sweep.population_size`` at a time) stacked into one
  state and trained by the vmapped ``population.train_step``, each batch shared by all K.

Both modes draw the data order from the base config's ``seed``; a swept ``seed`` changes the
initialization, dropout and augmentation. So the two modes train the same models.

``DIR/results.jsonl`` gets one JSON object per finished point (see README); a re-run skips the
points found there, and refuses a workdir whose ``sweep_config.json`` holds another base config.
At the end: a summary table sorted by validation top-1 and ``DIR/sweep.png``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from swinjax import data, evaluation, plots, population, runtime, search, steps
from swinjax.config import build_model, training_steps

FLAGS = flags.FLAGS
RESULTS_FILE = "results.jsonl"
CONFIG_FILE = "sweep_config.json"
# Keys a sweep never reads (or that only change how it logs): they may differ on a re-run.
IGNORED_KEYS = frozenset(
    {
        "data_dir",
        "test_split",
        "log_every_steps",
        "progress_bar",
        "checkpoint_every_epochs",
        "keep_checkpoints",
        "num_sample_images",
        "eval_batch_size",
    }
)


def define_flags() -> None:
    """Command-line flags, defined only when run as a program (modules stay importable together)."""
    config_flags.DEFINE_config_file("config", None, "sweep config file", lock_config=True)
    flags.DEFINE_string("workdir", None, "directory for results.jsonl and sweep.png")


# -------------------------------------------------------------------------------- the sweep


def run_sweep(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    log: Callable[[str], None] = tqdm.write,
) -> list[dict[str, Any]]:
    """Runs every point of ``config.sweep`` not yet in ``workdir/results.jsonl``; returns the
    results of all the sweep's points, best validation top-1 first."""
    base, sweep = search.split_config(config)
    search.validate_sweep(base, sweep)  # everything fails here, before data or compiles
    points = search.expand(sweep)
    keys = sorted(points[0])
    workdir = Path(workdir)
    _check_workdir(workdir, base, keys)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / CONFIG_FILE).write_text(
        json.dumps({"base": _flat(base), "sweep": sweep.to_dict()}, indent=2, default=str)
    )

    digests = [config_digest(search.point_config(base, p)) for p in points]
    done = {r["config_digest"]: r for r in read_results(workdir)}
    todo = [p for p, d in zip(points, digests, strict=True) if d not in done]
    finished = len(points) - len(todo)
    if finished:
        log(f"skipping {finished} of {len(points)} points already in {workdir / RESULTS_FILE}")
    size = sweep.population_size or len(todo)
    units = [[p] for p in todo] if sweep.execution == "sequential" else _chunks(todo, size)
    for unit in units:
        for result in train_points(base, unit, sweep.execution, log):
            append_result(workdir, result)
            done[result["config_digest"]] = result
    results = sorted((done[d] for d in digests), key=_rank)
    log(summary_table(results, keys))
    plots.plot_sweep(results, keys, workdir / "sweep.png")
    return results


def train_points(
    base: ml_collections.ConfigDict,
    points: list[search.Point],
    execution: str,
    log: Callable[[str], None] = tqdm.write,
) -> list[dict[str, Any]]:
    """Trains ``points`` (one, or a population of K in population mode) from scratch, validating
    after every epoch; returns one result dict per point (the ``results.jsonl`` record)."""
    t0 = time.perf_counter()
    configs = [search.point_config(base, p) for p in points]
    config = configs[0]  # what shapes the program: the same for every member of a population
    train_split = data.load_split(config, config.train_split)
    val_split = data.load_split(config, config.val_split)
    model = build_model(config, train_split)
    steps_per_epoch, total_steps = training_steps(config, train_split.num_examples)
    states = [steps.create_train_state(c, model, steps_per_epoch=steps_per_epoch) for c in configs]
    if execution == "population":
        state, step_fn, eval_fn = population.stack(states), population.train_step, _eval_population
    else:
        (state,), step_fn, eval_fn = states, steps.train_step, _eval_single
    del states  # a population is a copy: the K originals can go

    members = [_Member(p) for p in points]
    eval_batch = config.eval_batch_size or config.batch_size
    name = _format_point(points[0]) if len(points) == 1 else f"population of {len(points)}"
    bar = tqdm(total=total_steps, desc=name, unit="step", disable=not config.progress_bar)
    step = 0
    for epoch in range(config.num_epochs):
        pending = None
        batches = data.train_batches(train_split, config.batch_size, base.seed, epoch)
        for batch in data.prefetch_to_device(batches, size=2):
            state, metrics = step_fn(state, batch)
            step += 1
            if pending is not None:  # one step late: the device is already on this step
                _add_metrics(members, pending, step - 1, bar)
            pending = metrics
            bar.update(1)
            if step >= total_steps:
                break
        _add_metrics(members, pending, step, bar)
        if all(m.diverged_at is not None for m in members):
            break
        for m, val in zip(members, eval_fn(state, val_split, eval_batch), strict=True):
            m.end_epoch(epoch + 1, step, val)
        if step >= total_steps:
            break
    bar.close()
    seconds = time.perf_counter() - t0
    results = []
    for m, c in zip(members, configs, strict=True):
        result = m.result(step, seconds, execution, len(points), config_digest(c))
        results.append(result)
        log(
            f"{_format_point(m.point)}: {result['status']}, best val top-1 "
            f"{_format(result['best_val_top1'])} ({step} steps, {seconds:.1f} s)"
        )
    return results


def _eval_single(state: steps.TrainState, split: data.Split, batch: int) -> list[dict]:
    return [evaluation.evaluate(state, split, batch)]


def _eval_population(state: steps.TrainState, split: data.Split, batch: int) -> list[dict]:
    return population.evaluate(state, split, batch)


def _add_metrics(members: list[_Member], metrics: dict, step: int, bar: tqdm) -> None:
    """Fetches one step's metrics (scalars, or ``[K]`` for a population) into the members."""
    fetched = {k: np.atleast_1d(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
    for i, m in enumerate(members):
        m.add({k: float(v[i]) for k, v in fetched.items()}, step)
    live = [float(fetched["loss"][i]) for i, m in enumerate(members) if m.diverged_at is None]
    if live:
        bar.set_postfix(loss=" ".join(f"{v:.3f}" for v in live))


@dataclasses.dataclass
class _Member:
    """One point's record while it trains: running train sums, per-epoch history, divergence."""

    point: search.Point
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    count: int = 0
    diverged_at: int | None = None  # the first step whose metrics were NaN or infinite

    def add(self, metrics: dict[str, float], step: int) -> None:
        if self.diverged_at is not None:
            return
        if not all(math.isfinite(v) for v in metrics.values()):
            self.diverged_at = step
            return
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def end_epoch(self, epoch: int, step: int, val: dict[str, float]) -> None:
        if self.diverged_at is not None:
            return
        record = {"epoch": epoch, "step": step}
        record.update({f"train_{k}": self.sums[k] / self.count for k in ("loss", "top1")})
        record.update({f"val_{k}": val[k] for k in ("loss", "top1", "top5")})
        self.history.append(record)
        self.sums, self.count = {}, 0

    def result(
        self, step: int, seconds: float, execution: str, size: int, digest: str
    ) -> dict[str, Any]:
        best = max(self.history, key=lambda r: r["val_top1"], default={})  # earliest of ties
        last = self.history[-1] if self.history and self.diverged_at is None else {}
        return {
            "point": self.point,
            "status": "ok" if self.diverged_at is None else "diverged",
            "best_val_top1": best.get("val_top1"),
            "best_val_top5": best.get("val_top5"),
            "best_val_loss": best.get("val_loss"),
            "best_epoch": best.get("epoch"),
            "final_loss": last.get("train_loss"),
            "steps": step,
            "diverged_at_step": self.diverged_at,
            "seconds": seconds,
            "execution": execution,
            "population_size": size,
            "config_digest": digest,
            "history": self.history,
        }


def _chunks(points: list[search.Point], size: int) -> list[list[search.Point]]:
    return [points[i : i + size] for i in range(0, len(points), size)]


# ------------------------------------------------------------------------------ the workdir


def _flat(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as one flat JSON-able dict, sub-configs as dotted keys (``model_kwargs.X``)."""
    flat: dict[str, Any] = {}
    for key, value in json.loads(config.to_json_best_effort()).items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def config_digest(config: ml_collections.ConfigDict) -> str:
    """A fingerprint of everything that shapes a point's result (``IGNORED_KEYS`` left out)."""
    flat = {k: v for k, v in _flat(config).items() if k not in IGNORED_KEYS}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def _check_workdir(workdir: Path, base: ml_collections.ConfigDict, keys: list[str]) -> None:
    """Refuses a workdir that is not a directory, or holds a sweep over another base config
    (keys the new sweep varies, and ``IGNORED_KEYS``, may differ)."""
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"--workdir {workdir} exists and is not a directory; pick another path")
    saved = workdir / CONFIG_FILE
    if not saved.is_file():
        if (workdir / RESULTS_FILE).exists():
            raise ValueError(f"--workdir {workdir} has {RESULTS_FILE} but no {CONFIG_FILE}")
        return
    old, new = json.loads(saved.read_text())["base"], _flat(base)
    skip = IGNORED_KEYS | set(keys)
    changed = sorted(k for k in set(old) | set(new) if k not in skip and old.get(k) != new.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ValueError(
            f"--workdir {workdir} holds sweep results of a different base config ({diffs}); "
            "use a new --workdir, or that base config to add points to the sweep"
        )


def read_results(workdir: Path) -> list[dict[str, Any]]:
    """The records of ``workdir/results.jsonl``; a torn last line (a crash) is skipped."""
    path = Path(workdir) / RESULTS_FILE
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logging.warning("%s:%d is not JSON (a torn write?); that point will rerun", path, n)
    return records


def append_result(workdir: Path, result: dict[str, Any]) -> None:
    """Appends one record as a line of strict JSON (non-finite numbers become null)."""
    with (Path(workdir) / RESULTS_FILE).open("a") as f:
        f.write(json.dumps(_finite_or_none(result), allow_nan=False) + "\n")
        f.flush()


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


# ---------------------------------------------------------------------------------- reports


def _rank(result: dict[str, Any]) -> tuple:
    top1 = result.get("best_val_top1")
    return (top1 is None, -(top1 or 0.0))


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _format_point(point: search.Point) -> str:
    return " ".join(f"{k}={_format(v)}" for k, v in sorted(point.items()))


def summary_table(results: list[dict[str, Any]], keys: list[str]) -> str:
    """A plain-text table of ``results`` in the given order: the swept values and the scores."""
    head = [*keys, "val_top1", "val_top5", "best_epoch", "final_loss", "steps", "seconds", "status"]
    rows = [
        [
            *(_format(r["point"].get(k)) for k in keys),
            _format(r["best_val_top1"]),
            _format(r["best_val_top5"]),
            _format(r["best_epoch"]),
            _format(r["final_loss"]),
            str(r["steps"]),
            f"{r['seconds']:.1f}",
            r["status"],
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *rows]
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.workdir is None or FLAGS.config is None:
        raise app.UsageError("both --config and --workdir are required")
    logging.set_verbosity(logging.WARNING)  # orbax and tfds are chatty at INFO
    try:
        results = run_sweep(FLAGS.config, FLAGS.workdir)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    best = results[0]
    print(json.dumps({k: best[k] for k in ("point", "best_val_top1", "best_val_top5")}))


if __name__ == "__main__":
    runtime.reexec_with_hugepages()
    define_flags()
    app.run(main)
