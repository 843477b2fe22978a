"""Running a hyperparameter sweep (``python -m swinjax.sweep`` is its command line).

The config is a training config plus a ``sweep`` section (:mod:`swinjax.sweeps.space`). Each
point is set up as a training run is (:func:`swinjax.training.setup.setup_run`), trains from
scratch through the training loop of :mod:`swinjax.training.loop` (the one ``swinjax.train`` runs)
and is scored as a run validates (``evaluation.evaluate_for_config``) after every epoch, without
checkpoints: a point is the unit of resumption.

- ``sweep.execution = "sequential"``: one point after another through ``steps.train_step``.
  Points that differ only in array hyperparameters or the seed share its one compiled program.
- ``"population"``: P points (all, or ``sweep.population_size`` at a time) stacked into one
  state (:func:`swinjax.training.population.stack`) and trained by the same
  ``steps.train_step``, which maps over the members, each batch shared by all P.

Both modes draw the data order from the base config's ``seed``; a swept ``seed`` changes the
initialization, dropout and augmentation. So the two modes train the same models.

``DIR/results.jsonl`` gets one JSON object per finished point (see README); a re-run skips the
points found there, and refuses a workdir whose ``sweep_config.json`` holds another base config.
Both are written once the first point has trained: a sweep that fails to start writes nothing.
At the end: a summary table sorted by validation top-1 and ``DIR/sweep.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections
from absl import logging
from tqdm import tqdm

from swinjax import config as config_lib
from swinjax.errors import ConfigError
from swinjax.sweeps import space as search
from swinjax.training import evaluation, loop, parallel, plots
from swinjax.training.setup import setup_run
from swinjax.training.workdir import check_workdir

RESULTS_FILE = "results.jsonl"
CONFIG_FILE = "sweep_config.json"


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

    digests = [config_digest(search.point_config(base, p)) for p in points]
    done = {_record_digest(r): r for r in read_results(workdir)}
    todo = [p for p, d in zip(points, digests, strict=True) if d not in done]
    finished = len(points) - len(todo)
    if finished:
        log(f"skipping {finished} of {len(points)} points already in {workdir / RESULTS_FILE}")
    size = sweep.population_size or len(todo)
    units = [[p] for p in todo] if sweep.execution == "sequential" else _chunks(todo, size)
    for n, unit in enumerate(units):
        results = train_points(base, unit, sweep.execution, log)
        if n == 0:  # written once a point has trained: a failed start leaves nothing behind
            _save_sweep_config(workdir, base, sweep)
        for result in results:
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
    """Trains ``points`` (one, or a population of P in population mode) from scratch, validating
    after every epoch; returns one result dict per point (the ``results.jsonl`` record)."""
    t0 = time.perf_counter()
    configs = [search.point_config(base, p) for p in points]
    config = configs[0]  # what shapes the program: the same for every member of a population
    run = setup_run(
        config,
        splits={"train": config.train_split, "val": config.val_split},
        members=configs if execution == "population" else None,
        data_seed=base.seed,  # both modes read the data in the base seed's order
    )
    members = [_Member(p) for p in points]
    meter = loop.Meter(len(points), on_nonfinite="record")
    name = _format_point(points[0]) if len(points) == 1 else f"population of {len(points)}"
    bar = tqdm(total=run.plan.total_steps, desc=name, unit="step", disable=not config.progress_bar)

    def end_epoch(state: Any, pos: loop.Position) -> bool:
        if meter.all_diverged:
            return True
        scores = evaluation.evaluate_for_config(state, run.splits["val"], config, run.mesh)
        scores = scores if isinstance(scores, list) else [scores]
        for i, (m, val) in enumerate(zip(members, scores, strict=True)):
            m.end_epoch(pos.epoch, pos.step, meter.means(i), val, meter.diverged_at[i])
        return False

    with contextlib.closing(bar):  # the bar's line ends before an error's message
        _, pos, _ = loop.run_epochs(
            run.take_state(),
            run.plan,
            loop.Position(),
            meter,
            end_epoch=end_epoch,
            actions=[lambda step: _show(bar, meter)],
            sharding=parallel.batch_sharding(run.mesh),
        )
    seconds = time.perf_counter() - t0
    results = []
    for m, c, diverged in zip(members, configs, meter.diverged_at, strict=True):
        result = m.result(pos.step, seconds, execution, len(points), _fingerprint(c), diverged)
        results.append(result)
        log(
            f"{_format_point(m.point)}: {result['status']}, best val top-1 "
            f"{_format(result['best_val_top1'])} ({pos.step} steps, {seconds:.1f} s)"
        )
    return results


def _show(bar: tqdm, meter: loop.Meter) -> None:
    """One step on the bar, with the loss of every member still training."""
    live = [v for v, d in zip(meter.last["loss"], meter.diverged_at, strict=True) if d is None]
    if live:
        bar.set_postfix(loss=" ".join(f"{v:.3f}" for v in live))
    bar.update(1)


@dataclasses.dataclass
class _Member:
    """One point's per-epoch history while it trains."""

    point: search.Point
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)

    def end_epoch(
        self, epoch: int, step: int, train: dict, val: dict, diverged_at: int | None
    ) -> None:
        if diverged_at is not None:
            return
        record = {"epoch": epoch, "step": step}
        record.update({f"train_{k}": train[k] for k in ("loss", "top1")})
        record.update(
            {f"val_{k}": val[k] for k in ("loss", "top1", "top5", "ema_top1") if k in val}
        )
        self.history.append(record)

    def result(
        self,
        step: int,
        seconds: float,
        execution: str,
        size: int,
        fingerprint: dict[str, Any],
        diverged_at: Any,
    ) -> dict[str, Any]:
        best = max(self.history, key=lambda r: r["val_top1"], default={})  # earliest of ties
        last = self.history[-1] if self.history and diverged_at is None else {}
        return {
            "point": self.point,
            "status": "ok" if diverged_at is None else "diverged",
            "best_val_top1": best.get("val_top1"),
            "best_val_top5": best.get("val_top5"),
            "best_val_loss": best.get("val_loss"),
            "best_epoch": best.get("epoch"),
            "final_loss": last.get("train_loss"),
            "steps": step,
            "diverged_at_step": diverged_at,
            "seconds": seconds,
            "execution": execution,
            "population_size": size,
            "config_digest": _digest(fingerprint),
            "history": self.history,
            "config": fingerprint,
        }


def _chunks(points: list[search.Point], size: int) -> list[list[search.Point]]:
    return [points[i : i + size] for i in range(0, len(points), size)]


# ------------------------------------------------------------------------------ the workdir


def config_digest(config: ml_collections.ConfigDict | dict) -> str:
    """A digest of everything that shapes a point's result (``SWEEP_IGNORED`` left out)."""
    return _digest(_fingerprint(config))


def _fingerprint(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """The flat config without the keys a sweep ignores: what a point's result depends on."""
    flat = config_lib.flatten(config)
    return {k: v for k, v in flat.items() if k.split(".")[0] not in config_lib.SWEEP_IGNORED}


def _digest(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _record_digest(record: dict[str, Any]) -> str:
    """The digest a finished point is recognised by. A record that carries its config is
    digested anew after bringing the config forward (a key added since takes the value its
    release ran with), so points finished by an older release are not trained again; an older
    record without one keeps the digest it was written with."""
    if "config" not in record:
        return record["config_digest"]
    saved = config_lib.unflatten(record["config"])
    return config_digest(config_lib.upgrade_saved_config(saved))


def _check_workdir(workdir: Path, base: ml_collections.ConfigDict, keys: list[str]) -> None:
    """Refuses a workdir that is not a directory, or holds a sweep over another base config
    (keys the new sweep varies, and ``config.SWEEP_IGNORED``, may differ)."""
    saved = config_lib.saved_config(workdir / CONFIG_FILE)  # its base brought forward
    check_workdir(
        workdir,
        base,
        saved and saved["base"],
        ignore=config_lib.SWEEP_IGNORED | set(keys),
        holds="sweep results of a different base config",
        fix="use a new --workdir, or that base config to add points to the sweep",
    )
    if saved is None and (workdir / RESULTS_FILE).exists():
        raise ConfigError(f"--workdir {workdir} has {RESULTS_FILE} but no {CONFIG_FILE}")


def _save_sweep_config(
    workdir: Path, base: ml_collections.ConfigDict, sweep: ml_collections.ConfigDict
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    record = {"base": config_lib.flatten(base), "sweep": sweep.to_dict()}
    (workdir / CONFIG_FILE).write_text(json.dumps(record, indent=2, default=str))


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
