"""Checkpoints of a training run: an orbax CheckpointManager over ``WORKDIR/checkpoints``.

Each checkpoint step holds the train state (``state``) and a small JSON record (``meta``: epoch,
position in the epoch, the validation metrics). The run's config is saved beside them as
``WORKDIR/config.json``, so that ``python -m swinjax.eval --ckpt WORKDIR`` needs nothing else.
Retention keeps the last ``keep`` checkpoints plus the best by validation top-1 (of the parameters
or of their EMA, whichever is higher).

Which checkpoint to read is chosen in one place, :func:`restore`: ``"latest"``, ``"best"`` or a
step number; evaluation, resuming and ``init_from`` of a workdir all go through it.

Asynchronous saves. ``Checkpointer.save`` returns once orbax has copied the state's arrays off
the device (to host memory; on a GPU through pinned host memory); the files are written, the
step directory committed and old steps deleted by a background thread while training goes on.
The caller may donate or delete the state's buffers as soon as ``save`` returns (``train_step``
donates its state). On the CPU the host copy is a view of the device buffer, so JAX copies
instead of donating while that save is in flight: correct, one state's extra memory meanwhile.
A save waits for the previous one first; ``wait_until_finished()`` waits for the one in flight
and raises CheckpointError if its background write failed (that step is then not listed).
The restores, ``best_step``, ``all_steps`` and ``close`` wait first, so they never see a step
that is not yet on disk. Call ``close()`` (or ``wait_until_finished()``) before the process ends
or before anything reads the checkpoint directory.

Crashes. A step is written into a temporary directory (``STEP.orbax-checkpoint-tmp*``) that is
renamed into place when complete, so a process killed mid-write leaves only that temporary
directory: readers never list it, and the next writer (``read_only=False``) deletes it.

Preemption. ``reached_preemption(step)`` is JAX's preemption sync point: once any host of a
multi-host job (``jax.distributed`` initialized) receives SIGTERM, every host gets True at the
same step, so that all of them save that step together (a training loop asks every step, on every
host, and saves and closes where it is True). JAX's preemption notifier installs its own SIGTERM
handler in ``jax.distributed.initialize``: a multi-host loop must not install a Python SIGTERM
handler after that (it would replace JAX's). A single-process run (no jax.distributed) gets False
here always and uses its own SIGTERM flag.

Restoring walks back from the newest step. A step that fails with an error of a bad checkpoint
(:func:`is_bad_checkpoint`: unreadable, truncated, deleted or garbled files, a tree that does
not fit the template) is reported and the previous step tried; any other error (out of memory,
a bug, a permission error) propagates. Not detected: a changed byte inside the array data (zarr
chunks carry no checksum; only the OCDBT index does) may restore without an error.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from swinjax.errors import CheckpointError
from swinjax.training.workdir import CHECKPOINT_DIR, CONFIG_FILE, resolve
from swinjax.weights import params_to_timm

log = logging.getLogger(__name__)
STATE_ITEM = "state"  # the train state's item (folder) in a checkpoint step
BEST_METRIC = "val_top1"
# The best checkpoint is the one with the highest of these (the EMA's where it is better).
BEST_METRICS = (BEST_METRIC, "val_ema_top1")


def best_score(metrics: dict) -> float:
    """A checkpoint's score for "best": the highest of its :data:`BEST_METRICS`; -inf for a
    checkpoint saved without a validation score (stopped mid-epoch, or no validation split)."""
    return max((float(metrics[k]) for k in BEST_METRICS if k in metrics), default=-math.inf)


# The errors that mean "this checkpoint is bad", found by corrupting checkpoints written by
# orbax-checkpoint 0.12.8 with tensorstore (tests/test_checkpoint.py keeps one case of each):
BAD_CHECKPOINT_ERRORS: tuple[type[Exception], ...] = (
    # - json.JSONDecodeError (a ValueError): garbage, truncated or empty JSON files
    #   (state/_METADATA, state/array_metadatas/*, meta/metadata).
    # - tensorstore (every error is a ValueError, its message led by the status code):
    #   "NOT_FOUND: ..." (a deleted data file or manifest), "DATA_LOSS: ..." (a garbled index
    #   node: checksum), "OUT_OF_RANGE: ..." / "FAILED_PRECONDITION: ..." (truncated or deleted
    #   data files). Codes that blame the environment, not the files, are excluded below.
    # - orbax: "Requested shape ... is not compatible with the stored shape", "tree structures do
    #   not match": a checkpoint of another model than the template's.
    ValueError,
    # - orbax: 'Item "state" was not found in the checkpoint' (a deleted item directory, an empty
    #   step directory); a _METADATA file without its "tree_metadata" key.
    KeyError,
    # - orbax: "File .../meta/metadata not found" (a deleted JSON item file).
    FileNotFoundError,
)
# tensorstore status codes (message prefixes) that are about the machine, not the checkpoint: a
# ValueError led by one of them propagates (RESOURCE_EXHAUSTED is tensorstore's out of memory).
NOT_BAD_CHECKPOINT_STATUS = (
    "RESOURCE_EXHAUSTED:",
    "PERMISSION_DENIED:",
    "UNAUTHENTICATED:",
    "UNAVAILABLE:",
    "DEADLINE_EXCEEDED:",
    "CANCELLED:",
    "ABORTED:",
    "INTERNAL:",
    "UNKNOWN:",
)


def is_bad_checkpoint(error: BaseException) -> bool:
    """Whether ``error``, raised by a restore, means a bad checkpoint (see BAD_CHECKPOINT_ERRORS).

    orbax reraises any failure of an array read (BaseException included) as a bare ``Exception``
    whose ``__cause__`` is the original error: that cause decides.
    """
    if type(error) is Exception and error.__cause__ is not None:
        return is_bad_checkpoint(error.__cause__)
    if not isinstance(error, BAD_CHECKPOINT_ERRORS):
        return False
    return not str(error).startswith(NOT_BAD_CHECKPOINT_STATUS)


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


class Checkpointer:
    """Saves (asynchronously) and restores (state, meta) at training steps under
    ``WORKDIR/checkpoints``; see the module docstring.

    ``read_only=True`` (a reader): creates nothing, deletes nothing (not even what a killed save
    left behind) and refuses to save. It is orbax's manager with creation, clean-up and
    asynchronous writes off, not orbax's ``read_only`` option, which adds nothing to that but a
    warning on every open.
    """

    def __init__(self, workdir: str | Path, *, keep: int = 2, read_only: bool = False):
        self.directory = (Path(workdir) / CHECKPOINT_DIR).absolute()
        self.read_only = read_only
        if keep < 1:
            raise ValueError(f"checkpoint keep must be >= 1, got {keep}")
        policy = ocp.checkpoint_managers.AnyPreservationPolicy(
            [
                ocp.checkpoint_managers.LatestN(n=keep),
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=best_score,
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            best_fn=best_score,  # makes orbax persist each step's metrics
            create=not read_only,
            enable_async_checkpointing=not read_only,
            cleanup_tmp_directories=not read_only,  # what a killed save left behind
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._in_flight: int | None = None  # the step a background thread is writing

    def wait_until_finished(self) -> None:
        """Blocks until the save in flight (if any) is committed and old steps are deleted.

        Raises CheckpointError (its ``__cause__`` the original error) if that background write
        failed: the step is then not among ``all_steps()``.
        """
        step, self._in_flight = self._in_flight, None
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise CheckpointError(
                f"saving checkpoint {self.directory}/{step} failed: {type(e).__name__}: {e}"
            ) from e

    def all_steps(self) -> list[int]:
        """The committed steps, ascending (after waiting for a save in flight)."""
        self.wait_until_finished()
        return sorted(self.manager.all_steps())

    def best_step(self) -> int | None:
        """The kept step with the highest validation top-1, of the parameters or of their EMA
        (:func:`best_score`; None if no step has metrics)."""
        scored = [
            (best_score(m), step)
            for step in self.all_steps()
            if (m := self.manager.metrics(step)) and BEST_METRIC in m
        ]
        return max(scored)[1] if scored else None

    def reached_preemption(self, step: int) -> bool:
        """JAX's preemption sync point (orbax ``CheckpointManager.reached_preemption``): True at
        the same ``step`` on every host once any host of a multi-host job got SIGTERM; False
        when ``jax.distributed`` is not initialized. Call it every step, on every host."""
        return self.manager.reached_preemption(step)

    def save(self, step: int, state: Any, meta: dict, metrics: dict | None = None) -> None:
        """Starts writing step ``step``: returns once the arrays of ``state`` are copied off the
        device; a background thread writes and commits the files.

        ``state``'s buffers may be donated or deleted as soon as this returns. ``meta`` and
        ``metrics`` (``{"val_top1": float}``, plus ``"val_ema_top1"`` where there is an EMA, for
        the best-step retention) must be JSON; they are copied here. A save still in flight is
        waited for first (its failure raises CheckpointError here). An existing step is left as
        it is. A save without ``metrics`` (a stop mid-epoch, a run without validation) records
        ``{}``: it never ranks as the best (:func:`best_score`), and orbax, which ranks every
        step, has metrics for each.
        """
        if self.read_only:
            raise ValueError(f"{self.directory} was opened read-only; it cannot save")
        self.wait_until_finished()
        if step in self.manager.all_steps():
            return
        meta = json.loads(json.dumps(meta))  # our copy: the background thread writes it later
        metrics = json.loads(json.dumps(metrics or {}))
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_to_storable(state)), meta=ocp.args.JsonSave(meta)
        )
        self.manager.save(step, args=args, metrics=metrics, force=True)
        self._in_flight = step

    def restore(self, step: int, template: Any) -> tuple[Any, dict]:
        """(state, meta) at ``step``; ``template`` gives the tree structure, shapes, dtypes and
        shardings. Raises what orbax raises (see :func:`is_bad_checkpoint`).

        A hyperparameter of the template that the checkpoint lacks (one added to the key table
        after the checkpoint was written) takes the template's value, which the config, brought
        forward by ``config.upgrade_saved_config``, set to what the older release ran with."""
        self.wait_until_finished()
        storable = _to_storable(template)
        hparams = storable.get("hparams") if isinstance(storable, dict) else None
        added = self._hparams_not_saved(step, hparams) if isinstance(hparams, dict) else set()
        if added:
            kept = {k: v for k, v in hparams.items() if k not in added}
            storable = {**storable, "hparams": kept}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, storable)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        state = restored["state"]
        if added:
            state = {**state, "hparams": {**state["hparams"], **{k: hparams[k] for k in added}}}
        return _from_storable(template, state), dict(restored["meta"])

    def _hparams_not_saved(self, step: int, hparams: dict) -> set[str]:
        """The names in a train state's ``hparams`` that checkpoint ``step`` does not hold (none
        where its metadata cannot be read: the restore then reports the checkpoint as it is)."""
        try:
            on_disk = set(self._saved_tree(step)["hparams"].keys())
        except Exception as e:  # noqa: BLE001 - judged by is_bad_checkpoint, else re-raised
            if not is_bad_checkpoint(e):
                raise
            return set()
        return set(hparams) - on_disk

    def _saved_tree(self, step: int) -> Any:
        """The tree of the train state saved at ``step``, read from its metadata (each leaf's
        shape and dtype), without reading the arrays."""
        return ocp.StandardCheckpointHandler().metadata(
            self.manager.directory / str(step) / STATE_ITEM
        )

    def restore_params(self, step: int) -> dict:
        """The parameters saved at ``step``, as a nested dict of numpy arrays, without a template
        (for loading them into a model of another size: :mod:`swinjax.weights.load`)."""
        return self._restore_params_and_meta(step)[0]

    def _restore_params_and_meta(self, step: int) -> tuple[dict, dict]:
        """The saved state's arrays read as numpy arrays on the host, whatever devices and
        layout it was saved from (no shardings are restored: a state saved over 8 devices reads
        on one); its parameters and the step's meta."""
        self.wait_until_finished()
        as_numpy = jax.tree.map(
            lambda _: ocp.RestoreArgs(restore_type=np.ndarray), self._saved_tree(step)
        )
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(restore_args=as_numpy), meta=ocp.args.JsonRestore()
            ),
        )
        params = jax.tree.map(np.asarray, dict(restored["state"]["params"]))
        return params, dict(restored["meta"])

    def restore_latest(
        self, template: Any, *, report: Callable[[str], None] = log.warning
    ) -> tuple[Any, dict] | None:
        """The newest checkpoint that restores; None if there is none at all.

        A step that fails with a bad-checkpoint error (:func:`is_bad_checkpoint`) is reported
        through ``report`` and skipped; any other error propagates. If every step is bad,
        CheckpointError lists them.
        """
        return self._newest(lambda step: self.restore(step, template), report)

    def _newest(self, read: Callable[[int], Any], report: Callable[[str], None]) -> Any:
        """``read(step)`` of the newest step it succeeds on (see :meth:`restore_latest`)."""
        failures = []
        for step in reversed(self.all_steps()):
            try:
                return read(step)
            except Exception as e:
                if not is_bad_checkpoint(e):
                    raise
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
        """Waits for a save in flight (raising CheckpointError if it failed), then closes."""
        try:
            self.wait_until_finished()
        finally:
            self.manager.close()


def saved_steps(workdir: str | Path) -> list[int]:
    """The committed checkpoint steps of ``workdir``, ascending ([] where there is none). Opens a
    reader even where the directory is missing: every process of a multi-host run must open the
    same managers in the same order (orbax syncs them at each)."""
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        return ckpt.all_steps()
    finally:
        ckpt.close()


def restore(
    workdir: str | Path,
    which: str | int = "latest",
    template: Any = None,
    *,
    report: Callable[[str], None] = log.warning,
) -> tuple[Any, dict]:
    """``(state, meta)`` of a checkpoint of ``workdir``, read only.

    ``which``: ``"latest"`` (the newest step that restores: a bad one, see
    :func:`is_bad_checkpoint`, is reported through ``report`` and the previous one tried),
    ``"best"`` (the highest validation top-1, of the parameters or of their EMA) or a step number.
    ``template``: the train state whose tree, shapes, dtypes and shardings the checkpoint fills;
    None: the saved parameters alone, as a nested dict of numpy arrays, in place of the state (for
    a model of another size). CheckpointError, naming the saved steps, where there is no
    checkpoint, no such step, no step with validation metrics, or the chosen step cannot be read
    into ``template``; any other error propagates.
    """
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        saved = ckpt.all_steps()
        if not saved:
            raise CheckpointError(f"{ckpt.directory} holds no checkpoint")
        if template is None:
            read = ckpt._restore_params_and_meta
        else:
            read = partial(ckpt.restore, template=template)
        if which == "latest":
            return ckpt._newest(read, report)
        step = _chosen_step(ckpt, which, saved)
        try:
            return read(step)
        except Exception as e:  # noqa: BLE001 - judged by is_bad_checkpoint, else re-raised
            if not is_bad_checkpoint(e):
                raise
            raise CheckpointError(
                f"checkpoint {ckpt.directory}/{step} cannot be restored (unreadable, or not of the "
                f"model in {Path(workdir) / CONFIG_FILE}): {type(e).__name__}: {str(e)[:400]}"
            ) from e
    finally:
        ckpt.close()


def _chosen_step(ckpt: Checkpointer, which: str | int, saved: list[int]) -> int:
    if which == "best":
        step = ckpt.best_step()
        if step is None:
            raise CheckpointError(
                f"no checkpoint under {ckpt.directory} has validation metrics (saved steps: "
                f"{saved}); take the latest instead"
            )
        return step
    if isinstance(which, bool) or not isinstance(which, int):
        raise ValueError(f"which checkpoint: 'latest', 'best' or a step number, got {which!r}")
    if which not in saved:
        raise CheckpointError(
            f"step {which} is not among the saved steps {saved} under {ckpt.directory}"
        )
    return which


def weights_source(source: str) -> str | dict[str, np.ndarray]:
    """What :func:`swinjax.weights.load_pretrained` reads for ``config.init_from``: a swinjax
    workdir (its latest checkpoint) or checkpoint step (``WORKDIR/checkpoints/STEP``) becomes its
    parameters as a timm-layout state dict, so that they load into a model of another size like any
    checkpoint; anything else (a file, ``hf-hub:...``) is returned as it is."""
    path = Path(source).expanduser()
    if not path.is_dir():
        return source
    workdir, step = resolve(path)
    try:
        params, _ = restore(workdir, "latest" if step is None else step)
    except CheckpointError as e:
        raise CheckpointError(f"init_from={source!r}: {e}") from e
    return params_to_timm(params)
