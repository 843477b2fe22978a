"""Scoring a train state on a whole split: every example counted once, padding masked out.

One implementation for one model and for a population (a state with a leading member axis,
:mod:`swinjax.training.population`): ``steps.eval_step`` maps over the members itself.

- :func:`evaluate`: loss, top-1 and top-5 of a state's parameters;
- :func:`evaluate_for_config`: as a run validates and tests: the parameters and their EMA, with
  the config's test-time augmentation and evaluation batch size (training, sweeps, the benchmark
  and ``python -m swinjax.eval`` all score through it);
- :func:`evaluate_checkpoint`: a saved checkpoint of a workdir on one split (``swinjax.eval``);
- :func:`restore_params`: a saved checkpoint's model and parameters alone, without its dataset
  (``swinjax.export``).
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from swinjax import config as config_lib
from swinjax import data
from swinjax.data.batching import padded_batch_size
from swinjax.errors import CheckpointError, ConfigError
from swinjax.training import checkpoint, parallel, population, recipe, steps, workdir
from swinjax.training import workdir as workdir_lib
from swinjax.training.setup import setup_run
from swinjax.training.state import create_train_state, image_shape

# The splits of a saved run that ``evaluate_checkpoint`` names by role (other names are split
# strings of the run's dataset).
SPLIT_KEYS = {"test": "test_split", "val": "val_split", "train": "train_split"}


def evaluate(
    state: Any,
    split: data.Split,
    batch_size: int,
    mesh: Mesh | None = None,
    tta: bool = False,
    tta_shift: int = 0,
) -> dict[str, float] | list[dict[str, float]]:
    """Mean ``loss``, ``top1`` and ``top5`` over all of ``split``, plus ``num_examples``; for a
    population, a list of such dicts, one per member. ``tta``: flip test-time augmentation, with
    translated views where ``tta_shift`` > 0 (``steps.tta_views``).

    Data parallel over ``mesh`` (default: every device): the state is replicated, each batch
    split across the devices, ``batch_size`` rounded up to a multiple of the device count (the
    extra rows are padding, masked out). ``steps.eval_step`` returns per-batch sums over the real
    (mask = 1) rows; they are added up on the device and fetched once, at the end.
    """
    mesh = parallel.make_mesh() if mesh is None else mesh
    state = parallel.replicate(state, mesh)
    batch_size = padded_batch_size(batch_size, mesh.size)
    batches = data.eval_batches(
        split, batch_size, process_index=jax.process_index(), process_count=jax.process_count()
    )
    totals = None
    for batch in data.prefetch_to_device(batches, size=2, sharding=parallel.batch_sharding(mesh)):
        sums = steps.eval_step(state, batch, tta=tta, tta_shift=tta_shift)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
        raise ValueError(f"split {split.name!r} is empty; nothing to evaluate")
    totals_P = {
        k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in jax.device_get(totals).items()
    }
    members = [_means(totals_P, i, split) for i in range(population.size(state))]
    return members if state.step.ndim else members[0]


def tta_settings(
    config: ml_collections.ConfigDict, tta: bool | None = None, tta_shift: int | None = None
) -> tuple[bool, int]:
    """``(flip test-time augmentation on, pixels its views move by)``: the config's
    ``eval_tta`` and ``eval_tta_shift`` where ``tta`` / ``tta_shift`` are None; no move without
    test-time augmentation."""
    config_tta, config_shift = recipe.tta(config)
    tta = config_tta if tta is None else tta
    return tta, (config_shift if tta_shift is None else tta_shift) if tta else 0


def evaluate_for_config(
    state: Any,
    split: data.Split,
    config: ml_collections.ConfigDict,
    mesh: Mesh | None = None,
    *,
    tta: bool | None = None,
    tta_shift: int | None = None,
    batch_size: int | None = None,
) -> dict[str, float] | list[dict[str, float]]:
    """:func:`evaluate` as ``config``'s run scores: the parameters and, where the state keeps an
    EMA of them (``state.ema_params``), the EMA too (``ema_loss``, ``ema_top1``, ``ema_top5``
    beside ``loss``, ``top1``, ``top5``); test-time augmentation as :func:`tta_settings` gives;
    batches of ``batch_size``, else ``config.eval_batch_size``, else ``config.batch_size``."""
    tta, tta_shift = tta_settings(config, tta, tta_shift)
    batch_size = batch_size or config.eval_batch_size or config.batch_size
    raw = evaluate(state, split, batch_size, mesh, tta, tta_shift)
    if state.ema_params is None:
        return raw
    ema = evaluate(state.replace(params=state.ema_params), split, batch_size, mesh, tta, tta_shift)

    def merged(r: dict[str, float], e: dict[str, float]) -> dict[str, float]:
        return {**r, **{f"ema_{k}": v for k, v in e.items() if k != "num_examples"}}

    if isinstance(raw, list):
        return [merged(r, e) for r, e in zip(raw, ema, strict=True)]
    return merged(raw, ema)


def evaluate_checkpoint(
    path: str | Path,
    split: str = "test",
    *,
    data_dir: str | None = None,
    best: bool = False,
    batch_size: int | None = None,
    tta: bool = False,
    tta_shift: int | None = None,
) -> dict[str, Any]:
    """Scores a saved checkpoint on ``split``; returns what ``python -m swinjax.eval`` prints.

    ``path``: a training workdir (its latest checkpoint, or with ``best`` the best by validation
    top-1) or one checkpoint step (``WORKDIR/checkpoints/STEP``); the config saved there rebuilds
    the model. ``split``: ``test``, ``val``, ``train`` (the run's splits) or a split string of its
    dataset. ``tta``: flip test-time augmentation, its views moved by ``tta_shift`` pixels (None:
    the run's ``eval_tta_shift``). The record: ``loss``, ``top1``, ``top5``, ``num_examples``
    (and ``ema_*`` for a run with an EMA), ``step``, ``split``, ``tta``, ``tta_shift``.
    """
    run_dir, step = workdir_lib.resolve(Path(path))
    if best and step is not None:
        raise CheckpointError("--best takes a workdir, not a checkpoint step")
    config = workdir_lib.load_config(run_dir)
    config.distributed = False  # scoring runs in one process
    if data_dir:
        config.data_dir = data_dir
    spec = config[SPLIT_KEYS[split]] if split in SPLIT_KEYS else split
    if not spec:
        raise ConfigError(
            f"the run in {run_dir} has no {split} split (config.{SPLIT_KEYS[split]} is empty); "
            "give a split string of its dataset, e.g. --split 'train[90%:]'"
        )
    run = setup_run(config, splits={split: spec}, train=False)
    workdir.check_classes(run_dir, run.splits[split])
    which = "best" if best else "latest" if step is None else step
    state, _ = checkpoint.restore(run_dir, which, run.take_state())
    tta, tta_shift = tta_settings(config, tta, tta_shift)
    metrics = evaluate_for_config(
        state,
        run.splits[split],
        config,
        run.mesh,
        tta=tta,
        tta_shift=tta_shift,
        batch_size=batch_size,
    )
    return {**metrics, "step": int(state.step), "split": split, "tta": tta, "tta_shift": tta_shift}


@dataclasses.dataclass(frozen=True)
class Restored:
    """A saved model ready to run: ``model.apply({"params": params}, x)`` on images normalized
    with ``mean``/``std`` (empty: scaled to [0, 1] only) at ``image_size`` (H, W)."""

    config: ml_collections.ConfigDict
    model: Any
    params: Any
    class_names: tuple[str, ...]
    step: int
    ema: bool  # whether ``params`` are the EMA of the parameters
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def image_size(self) -> tuple[int, int]:
        """The model's input (H, W)."""
        return image_shape(self.model)[:2]


def restore_params(path: str | Path, *, best: bool = False, ema: bool = False) -> Restored:
    """The model and parameters of a saved checkpoint, without reading its dataset.

    ``path``: a training workdir (its latest checkpoint, or with ``best`` the best by validation
    top-1) or one checkpoint step (``WORKDIR/checkpoints/STEP``). ``ema``: the EMA of the
    parameters (a run with ``ema_decay`` > 0). The model's classes and input channels are read
    from the saved parameters' shapes, its input size from the saved config; the class names
    from ``classes.json`` (the label numbers where the workdir has none). CheckpointError for a
    bad path or checkpoint, before anything compiles.
    """
    run_dir, step = workdir_lib.resolve(Path(path))
    if best and step is not None:
        raise CheckpointError("--best takes a workdir, not a checkpoint step")
    config = workdir_lib.load_config(run_dir)
    config.distributed = False
    which = "best" if best else "latest" if step is None else step
    saved, _ = checkpoint.restore(run_dir, which)  # the parameters alone: their shapes
    num_classes, channels = _saved_head_and_channels(saved, run_dir)
    stand_in = types.SimpleNamespace(
        image_shape=(*config_lib.input_size(config), channels), num_classes=num_classes
    )
    model = config_lib.build_model(config, stand_in)
    template = create_train_state(config, model, steps_per_epoch=1)
    state, _ = checkpoint.restore(run_dir, which, template)
    if ema and state.ema_params is None:
        raise CheckpointError(
            f"the run in {run_dir} keeps no EMA of its parameters (config.ema_decay is 0); "
            "leave out --ema"
        )
    names = workdir_lib.load_class_names(run_dir) or tuple(str(k) for k in range(num_classes))
    return Restored(
        config=config,
        model=model,
        params=state.ema_params if ema else state.params,
        class_names=tuple(names),
        step=int(state.step),
        ema=ema,
        mean=tuple(state.mean),
        std=tuple(state.std),
    )


def _saved_head_and_channels(params: dict, run_dir: Path) -> tuple[int, int]:
    """(number of classes, input channels) of saved parameters: the head's outputs (0: no
    head) and the input channels of the patch embedding's first convolution."""
    head = params.get("head", {}).get("fc", {}).get("kernel")
    embed = params.get("patch_embed", {})
    first = embed.get("proj") or embed.get("conv_0") or {}
    if "kernel" not in first:
        raise CheckpointError(f"the checkpoint in {run_dir} holds no patch embedding kernel")
    return (0 if head is None else int(head.shape[-1])), int(first["kernel"].shape[-2])


def _means(totals_P: dict[str, np.ndarray], i: int, split: data.Split) -> dict[str, float]:
    count = float(totals_P["count"][i])
    if count != split.num_examples:
        raise AssertionError(f"evaluated {count} examples of {split.num_examples}")
    scores = {k: float(totals_P[k][i]) / count for k in ("loss", "top1", "top5")}
    return {**scores, "num_examples": int(count)}


def predict_samples(state: Any, split: Any, n: int) -> tuple[np.ndarray, ...]:
    """The first ``n`` images of ``split`` (as evaluation reads them), their labels and the
    model's predictions."""
    n = min(n, split.num_examples)
    batch = next(data.eval_batches(split, max(n, 1)))
    images, labels = batch["image"][:n], batch["label"][:n]
    logits = steps.predict(state, jnp.asarray(images))
    return images, labels, np.asarray(jax.device_get(logits)).argmax(-1)
