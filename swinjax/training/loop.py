"""The training loop, written once: ``steps.train_step`` over prefetched batches, epoch after
epoch, with the metrics of each step fetched one step late (the host never waits on the device),
periodic actions, and stopping. Training (:mod:`.trainer`), sweeps and the benchmark all run it;
what differs between them is what happens at the end of an epoch (:func:`run_epochs`).

    meter = loop.Meter()
    state, step, stopped = loop.train_epoch(state, batches, meter, step=0, stop_step=100)
    meter.means()                       # {"loss": ..., "top1": ..., ...} over the epoch

A population (a state with a leading member axis, :mod:`swinjax.training.population`) runs through
the same functions: metrics are ``[P]`` and the meter keeps one set of sums per member.

Actions are called after each step's metrics are fetched, as ``action(step)``, for every step in
order: ``clu.periodic_actions`` objects (``PeriodicCallback``, ``ReportProgress``) fit as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from swinjax import data
from swinjax.training import steps


class Meter:
    """Running sums of the step metrics of one epoch, one set per member (one for a single model,
    P for a population), fetched from the device one step late.

    ``on_nonfinite="raise"``: a NaN or infinite metric raises FloatingPointError naming the step.
    ``"record"``: the member is marked diverged at that step (``diverged_at[i]``) and its sums stop;
    the others go on.
    """

    def __init__(self, members: int = 1, on_nonfinite: str = "raise") -> None:
        if on_nonfinite not in ("raise", "record"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'record', got {on_nonfinite!r}")
        self.members = members
        self.on_nonfinite = on_nonfinite
        self.diverged_at: list[int | None] = [None] * members
        self.last: dict[str, np.ndarray] = {}  # the latest fetched metrics, [P] each
        self.reset()

    def reset(self) -> None:
        """Starts a new epoch (divergence is kept)."""
        self.sums: dict[str, np.ndarray] = {}
        self.count = np.zeros(self.members, np.int64)

    def add(self, metrics: dict[str, Any], step: int) -> dict[str, np.ndarray]:
        """Fetches step ``step``'s metrics (scalars, or ``[P]``) and adds them up."""
        fetched = {
            k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in jax.device_get(metrics).items()
        }
        finite = np.all([np.isfinite(v) for v in fetched.values()], axis=0)
        if not finite.all() and self.on_nonfinite == "raise":
            steps.check_finite(fetched, step)
        live = finite & np.array([d is None for d in self.diverged_at])
        for i in np.flatnonzero(~finite):
            if self.diverged_at[i] is None:
                self.diverged_at[i] = step
        for k, v in fetched.items():
            self.sums[k] = self.sums.get(k, np.zeros(self.members)) + np.where(live, v, 0.0)
        self.count += live
        self.last = fetched
        return fetched

    def means(self, member: int = 0) -> dict[str, float]:
        """Epoch means of member ``member`` (NaN where it has no step)."""
        n = self.count[member]
        return {k: float(v[member] / n) if n else math.nan for k, v in self.sums.items()}

    @property
    def all_diverged(self) -> bool:
        return all(d is not None for d in self.diverged_at)


def train_epoch(
    state: Any,
    batches: Iterable[Any],
    meter: Meter,
    *,
    step: int,
    stop_step: int,
    actions: Sequence[Callable[[int], Any]] = (),
    should_stop: Callable[[int], str | None] = lambda step: None,
) -> tuple[Any, int, str | None]:
    """Runs ``steps.train_step`` over ``batches`` (already on the device) from optimizer step
    ``step``, until they run out, ``stop_step`` is reached, or ``should_stop(step)`` gives a
    reason. Step ``s``'s metrics are fetched into ``meter`` while step ``s + 1`` runs, then each
    action is called with ``s``. Returns ``(state, step, reason or None)``."""
    pending, reason = None, None
    for batch in batches:
        state, metrics = steps.train_step(state, batch)
        step += 1
        if pending is not None:  # one step late: the device is already on this step
            _fetch(meter, pending, step - 1, actions)
        pending = metrics
        reason = should_stop(step)
        if reason is not None or step >= stop_step:
            break
    if pending is not None:
        _fetch(meter, pending, step, actions)
    return state, step, reason


def _fetch(meter: Meter, metrics: Any, step: int, actions: Sequence[Callable[[int], Any]]) -> None:
    meter.add(metrics, step)
    for action in actions:
        action(step)


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a run is: optimizer steps taken, epochs finished, steps into the current epoch."""

    step: int = 0
    epoch: int = 0
    epoch_step: int = 0


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long a run goes, and over which data (``batch_size`` global, ``seed`` the order's)."""

    split: data.Split
    batch_size: int
    seed: int
    steps_per_epoch: int
    num_epochs: int
    total_steps: int  # <= steps_per_epoch * num_epochs (max_steps)


def run_epochs(
    state: Any,
    plan: Plan,
    start: Position,
    meter: Meter,
    *,
    end_epoch: Callable[[Any, Position], bool],
    start_epoch: Callable[[Position], Any] = lambda pos: None,
    actions: Sequence[Callable[[int], Any]] = (),
    should_stop: Callable[[int], str | None] = lambda step: None,
    sharding: Any = None,
) -> tuple[Any, Position, str | None]:
    """Epochs of :func:`train_epoch` from ``start`` to the end of ``plan``.

    Each epoch reads ``plan.split`` in the order of (``plan.seed``, epoch), from
    ``start.epoch_step`` on when resuming mid-epoch; every process reads only its rows of each
    global batch, put on ``sharding`` (None: the default device). ``start_epoch(position)`` is
    called before an epoch, ``end_epoch(state, position)`` after a whole one (``meter`` still
    holds its sums; return True to stop). Returns ``(state, position, reason)``: reason is None
    at the end of the plan, ``"max_steps"`` where ``plan.total_steps`` ends it mid-epoch,
    ``"end_epoch"`` where ``end_epoch`` stopped it, or what ``should_stop`` gave.
    """
    pos = start
    while pos.epoch < plan.num_epochs and pos.step < plan.total_steps:
        start_epoch(pos)
        meter.reset()
        with contextlib.closing(device_batches(plan, pos, sharding)) as batches:
            state, step, reason = train_epoch(
                state,
                batches,
                meter,
                step=pos.step,
                stop_step=plan.total_steps,
                actions=actions,
                should_stop=should_stop,
            )
        pos = Position(step, pos.epoch, pos.epoch_step + step - pos.step)
        if pos.epoch_step < plan.steps_per_epoch:  # stopped inside the epoch
            return state, pos, reason or "max_steps"
        pos = Position(step, pos.epoch + 1, 0)
        if end_epoch(state, pos):
            return state, pos, "end_epoch"
        if reason is not None:
            return state, pos, reason
    return state, pos, None


def device_batches(plan: Plan, pos: Position, sharding: Any) -> Iterator[Any]:
    """The batches of ``pos.epoch`` from ``pos.epoch_step`` on, this process's rows of each, on
    ``sharding`` and prefetched (close the iterator to stop its thread)."""
    batches = data.train_batches(
        plan.split,
        plan.batch_size,
        plan.seed,
        pos.epoch,
        start_step=pos.epoch_step,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return data.prefetch_to_device(batches, size=2, sharding=sharding)
