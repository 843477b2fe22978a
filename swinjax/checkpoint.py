"""Checkpoints of a training run: an orbax CheckpointManager over ``WORKDIR/checkpoints``.

Each checkpoint step holds the train state (``state``) and a small JSON record (``meta``: epoch,
position in the epoch, the validation metrics). The run's config is saved beside them as
``WORKDIR/config.json``, so that ``python -m swinjax.eval --ckpt WORKDIR`` needs nothing else.
Retention keeps the last ``keep`` checkpoints plus the best by validation top-1. Restoring walks
back from the newest step: a checkpoint that fails to restore (half-written, truncated, deleted
files) is reported and the previous good one used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import serialization

log = logging.getLogger(__name__)
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BEST_METRIC = "val_top1"


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected; the message says where and why."""


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_storable(tree: Any) -> Any:
    """State dict of a pytree, with typed PRNG keys as their raw uint32 data."""
    sd = serialization.to_state_dict(tree)
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, sd)


def _from_storable(template: Any, stored: Any) -> Any:
    template_sd = serialization.to_state_dict(template)
    restored = jax.tree.map(
        lambda t, s: jax.random.wrap_key_data(s, impl=jax.random.key_impl(t)) if _is_key(t) else s,
        template_sd,
        stored,
    )
    return serialization.from_state_dict(template, restored)


def save_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json_best_effort(indent=1, sort_keys=True) + "\n")


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: {workdir} is not a swinjax workdir (expected {CONFIG_FILE} and "
            f"{CHECKPOINT_DIR}/ written by `python -m swinjax.train --workdir {workdir}`)"
        )
    return ml_collections.ConfigDict(json.loads(path.read_text()))


class Checkpointer:
    """Saves and restores (state, meta) at training steps under ``WORKDIR/checkpoints``."""

    def __init__(self, workdir: str | Path, *, keep: int = 2, read_only: bool = False):
        self.directory = (Path(workdir) / CHECKPOINT_DIR).absolute()
        if keep < 1:
            raise ValueError(f"checkpoint keep must be >= 1, got {keep}")
        policy = ocp.checkpoint_managers.AnyPreservationPolicy(
            [
                ocp.checkpoint_managers.LatestN(n=keep),
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda m: m[BEST_METRIC],
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            best_fn=lambda m: m[BEST_METRIC],  # makes orbax persist each step's metrics
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=not read_only,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def best_step(self) -> int | None:
        """The kept step with the highest validation top-1 (None if no step has metrics)."""
        scored = [
            (float(m[BEST_METRIC]), step)
            for step in self.all_steps()
            if (m := self.manager.metrics(step)) and BEST_METRIC in m
        ]
        return max(scored)[1] if scored else None

    def save(self, step: int, state: Any, meta: dict, metrics: dict | None = None) -> None:
        """Writes step ``step`` (overwriting nothing: an existing step is left as it is)."""
        if step in self.manager.all_steps():
            return
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_to_storable(state)), meta=ocp.args.JsonSave(meta)
        )
        self.manager.save(step, args=args, metrics=metrics, force=True)
        self.manager.wait_until_finished()

    def restore(self, step: int, template: Any) -> tuple[Any, dict]:
        """(state, meta) at ``step``; ``template`` gives the tree structure, shapes and dtypes."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_storable(template))
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return _from_storable(template, restored["state"]), dict(restored["meta"])

    def restore_latest(
        self, template: Any, *, report: Callable[[str], None] = log.warning
    ) -> tuple[Any, dict] | None:
        """The newest checkpoint that restores; None if there is none at all.

        A step that fails to restore is reported through ``report`` and skipped; if every step
        fails, CheckpointError lists them.
        """
        failures = []
        for step in reversed(self.all_steps()):
            try:
                return self.restore(step, template)
            except Exception as e:  # noqa: BLE001 - any failure means: try the previous one
                failures.append(f"step {step}: {type(e).__name__}: {str(e)[:300]}")
                report(
                    f"checkpoint {self.directory}/{step} is unreadable ({type(e).__name__}); "
                    "falling back to the previous checkpoint"
                )
        if failures:
            raise CheckpointError(
                f"no checkpoint under {self.directory} could be restored: " + "; ".join(failures)
            )
        return None

    def close(self) -> None:
        self.manager.close()
