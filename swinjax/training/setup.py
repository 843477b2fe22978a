"""Setting up a run, written once: what training, a sweep, the benchmark and evaluation all need
before their first step.

:func:`setup_run` validates the config, starts ``jax.distributed`` where configured, makes the
mesh, checks the batch size, loads the splits, builds the model, plans the steps and creates the
train state (or a population of them), replicated over the mesh. It reads data and compiles the
state's initialization; it writes nothing, so a run whose set-up fails leaves no trace.

    run = setup_run(config)                                  # the config's train/val/test splits
    run.plan, run.splits["val"], run.mesh
    state = run.take_state()                                 # the initial state, handed over once
    run = setup_run(config, splits={"test": "test"}, train=False)  # scoring: no plan
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
from jax.sharding import Mesh

from swinjax import config as config_lib
from swinjax import data
from swinjax.data.batching import check_batch_size
from swinjax.models import SwinTransformer
from swinjax.training import loop, parallel, population, sharding
from swinjax.training import state as state_lib


@dataclasses.dataclass
class Run:
    """What a run is made of once set up."""

    config: ml_collections.ConfigDict
    mesh: Mesh
    splits: dict[str, data.Split]  # by role: "train", "val", "test", or the names asked for
    model: SwinTransformer
    plan: loop.Plan | None  # how long training goes, over which data; None: not for training
    state: Any  # the initial train state (a population's, stacked), replicated over ``mesh``

    @property
    def main_process(self) -> bool:
        """Whether this is the process that writes logs, metrics and plots (process 0)."""
        return parallel.is_main_process()

    def take_state(self) -> Any:
        """The initial state, handed over: the run keeps no reference to it, so that it is freed
        once the caller is done with it (a train step donates it, a restore replaces it)."""
        if self.state is None:
            raise RuntimeError("the run's initial state was already taken")
        state, self.state = self.state, None
        return state


def setup_run(
    config: ml_collections.ConfigDict,
    *,
    splits: Mapping[str, str | data.Split] | None = None,
    train: bool = True,
    members: Sequence[ml_collections.ConfigDict] | None = None,
    data_seed: int | None = None,
    checks: Sequence[Callable[[ml_collections.ConfigDict], None]] = (),
) -> Run:
    """The :class:`Run` of ``config``; fails, before anything compiles, on a bad config, batch
    size or dataset.

    ``splits``: role -> a split string of ``config.dataset`` (loaded at the model's input size)
    or a split already loaded (the benchmark's stand-in for a dataset that is not prepared);
    None: the config's ``train``, ``val`` and ``test`` splits (those not empty). The model is fitted
    to the first split's images and classes. ``train=False`` (scoring a checkpoint): no plan and
    no batch-size check, the state a template to restore into. ``members``: the configs of a
    population's members (one compiled program: they differ in array hyperparameters and the
    seed), whose states are stacked. ``data_seed``: the seed of the data order (None:
    ``config.seed``). ``checks``: more checks of the config, run after its validation and before
    any device or data is touched (e.g. whether the workdir may take this run).
    """
    config_lib.validate_config(config)
    for check in checks:
        check(config)
    parallel.initialize_distributed(config.distributed)  # before any device use
    mesh = parallel.make_mesh()  # every device of every process
    if train:
        # every device holds a share (>= 1 row) of every microbatch
        k = config.grad_accum_steps
        unit = f"devices ({mesh.size}) x grad_accum_steps ({k})" if k > 1 else "devices"
        check_batch_size(config.batch_size, mesh.size * k, unit=unit)
    loaded = _load_splits(config, splits)  # fails here, before compiling, if data are missing
    first = next(iter(loaded.values()))
    model = config_lib.build_model(config, first)
    plan = _plan(config, loaded, data_seed) if train else None
    steps_per_epoch = plan.steps_per_epoch if plan else 1
    states = [
        state_lib.create_train_state(c, model, steps_per_epoch=steps_per_epoch)
        for c in (members or [config])
    ]
    state = population.stack(states) if members is not None else states[0]
    del states  # a population is a copy: the originals can go
    # A restored checkpoint takes this sharding, whatever the layout and device count it was
    # saved from.
    state = sharding.place(state, mesh, config.sharding)
    return Run(config=config, mesh=mesh, splits=loaded, model=model, plan=plan, state=state)


def _load_splits(
    config: ml_collections.ConfigDict, splits: Mapping[str, str | data.Split] | None
) -> dict[str, data.Split]:
    size = config_lib.input_size(config)
    if splits is None:
        return data.load_splits(config, size)
    if not splits:
        raise ValueError("setup_run needs at least one split")
    return {
        role: data.load_split(config, split, size) if isinstance(split, str) else split
        for role, split in splits.items()
    }


def _plan(
    config: ml_collections.ConfigDict, splits: dict[str, data.Split], data_seed: int | None
) -> loop.Plan:
    if "train" not in splits:
        raise ValueError(f"a run that trains needs a 'train' split, got {sorted(splits)}")
    steps_per_epoch, total_steps = config_lib.training_steps(config, splits["train"])
    return loop.Plan(
        split=splits["train"],
        batch_size=config.batch_size,
        seed=config.seed if data_seed is None else data_seed,
        steps_per_epoch=steps_per_epoch,
        num_epochs=config.num_epochs,
        total_steps=total_steps,
    )
