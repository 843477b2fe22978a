"""Scoring a train state on a whole split: every example counted once, padding masked out.

One implementation for one model and for a population (a state with a leading member axis,
:mod:`swinjax.training.population`): ``steps.eval_step`` maps over the members itself.

- :func:`evaluate`: loss, top-1 and top-5 of a state's parameters;
- :func:`evaluate_for_config`: as a run validates and tests: the parameters and their EMA, with
  the config's test-time augmentation and evaluation batch size (training, sweeps, the benchmark
  and ``python -m swinjax.eval`` all score through it);
- :func:`evaluate_checkpoint`: a saved checkpoint of a workdir on one split (``swinjax.eval``);
  :func:`restore_checkpoint_split` and :func:`evaluate_restored` are its two halves;
- :func:`split_predictions`: every example's probabilities and label, for the evaluation report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from swinjax import data
from swinjax.data.batching import padded_batch_size
from swinjax.errors import ConfigError
from swinjax.training import checkpoint, inference, parallel, population, recipe, steps, workdir
from swinjax.training.setup import setup_run

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


def eval_batch_size(config: Any, batch_size: int | None = None) -> int:
    """The evaluation batch size: ``batch_size``, else ``config.eval_batch_size``, else
    ``config.batch_size``."""
    return batch_size or config.eval_batch_size or config.batch_size


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
    batch_size = eval_batch_size(config, batch_size)
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
    restored = restore_checkpoint_split(path, split, data_dir=data_dir, best=best)
    return evaluate_restored(restored, batch_size=batch_size, tta=tta, tta_shift=tta_shift)


def evaluate_restored(
    restored: CheckpointSplit,
    *,
    batch_size: int | None = None,
    tta: bool = False,
    tta_shift: int | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_checkpoint`'s record for a checkpoint already restored."""
    config, state = restored.config, restored.state
    tta, tta_shift = tta_settings(config, tta, tta_shift)
    metrics = evaluate_for_config(
        state,
        restored.split,
        config,
        restored.mesh,
        tta=tta,
        tta_shift=tta_shift,
        batch_size=batch_size,
    )
    split = restored.split_name
    return {**metrics, "step": int(state.step), "split": split, "tta": tta, "tta_shift": tta_shift}


@dataclasses.dataclass(frozen=True)
class CheckpointSplit:
    """A saved checkpoint restored with one split of its run's dataset
    (:func:`restore_checkpoint_split`)."""

    config: ml_collections.ConfigDict  # the run's saved config
    state: Any  # the restored train state, replicated over ``mesh``
    split: data.Split
    split_name: str  # as asked: test, val, train or a split string
    mesh: Mesh
    workdir: Path


def restore_checkpoint_split(
    path: str | Path, split: str = "test", *, data_dir: str | None = None, best: bool = False
) -> CheckpointSplit:
    """The checkpoint at ``path`` and the run's ``split``, as :func:`evaluate_checkpoint` reads
    them (its arguments); a UserError for a bad path, a missing split or other classes."""
    run_dir, which, config = inference.open_checkpoint(path, best=best)
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
    state, _ = checkpoint.restore(run_dir, which, run.take_state())
    return CheckpointSplit(
        config=config,
        state=state,
        split=run.splits[split],
        split_name=split,
        mesh=run.mesh,
        workdir=run_dir,
    )


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


@dataclasses.dataclass(frozen=True)
class SplitPredictions:
    """Every example of a split, in its order (:func:`split_predictions`)."""

    logits_EK: np.ndarray  # float32 logits (with TTA: the log of the views' mean softmax)
    probs_EK: np.ndarray  # float32 class probabilities (with TTA: the views' average)
    labels_E: np.ndarray  # int labels
    kept_E: np.ndarray  # indices of the examples whose images are kept, best first
    images_EHWC: np.ndarray  # their images as evaluation reads them, in ``kept_E``'s order


def split_predictions(
    state: Any,
    split: data.Split,
    batch_size: int,
    mesh: Mesh | None = None,
    *,
    tta: bool = False,
    tta_shift: int = 0,
    keep_mistakes: int = 0,
) -> SplitPredictions:
    """The probabilities and labels of every example of ``split`` through ``steps.predict``
    (``tta`` as :func:`evaluate`), data parallel over ``mesh`` as :func:`evaluate`; the images
    of the ``keep_mistakes`` most confident mistakes (top-1 wrong, highest predicted
    probability) are kept, only theirs (no split is held whole)."""
    mesh = parallel.make_mesh() if mesh is None else mesh
    state = parallel.replicate(state, mesh)
    sharding = parallel.batch_sharding(mesh)
    logits, probs, labels, seen = [], [], [], 0
    kept = _Kept(keep_mistakes)
    for batch in data.eval_batches(split, padded_batch_size(batch_size, mesh.size)):
        real_B = np.asarray(batch["mask"]) > 0
        images = parallel.put_batch(batch["image"], sharding)
        out_BK = steps.predict(state, images, tta=tta, tta_shift=tta_shift)
        logits_BK = np.asarray(jax.device_get(out_BK), np.float32)[real_B]
        probs_BK = np.asarray(jax.device_get(jax.nn.softmax(out_BK)), np.float32)[real_B]
        labels_B = np.asarray(batch["label"])[real_B]
        kept.offer(seen, probs_BK, labels_B, batch["image"][real_B])
        logits.append(logits_BK)
        probs.append(probs_BK)
        labels.append(labels_B)
        seen += len(labels_B)
    if not probs:
        raise ValueError(f"split {split.name!r} is empty; nothing to predict")
    return SplitPredictions(
        logits_EK=np.concatenate(logits),
        probs_EK=np.concatenate(probs),
        labels_E=np.concatenate(labels),
        kept_E=kept.index_E,
        images_EHWC=kept.images_EHWC,
    )


class _Kept:
    """The running ``n`` most confident mistakes: their indices, confidences and images."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.index_E = np.zeros((0,), np.int64)
        self.conf_E = np.zeros((0,), np.float32)
        self.images_EHWC: np.ndarray | None = None

    def offer(
        self, start: int, probs_BK: np.ndarray, labels_B: np.ndarray, images_BHWC: np.ndarray
    ) -> None:
        """Considers a batch whose first example is number ``start`` of the split."""
        images_BHWC = np.asarray(images_BHWC)
        if self.images_EHWC is None:
            self.images_EHWC = images_BHWC[:0]
        wrong_B = probs_BK.argmax(-1) != labels_B
        if self.n <= 0 or not wrong_B.any():
            return
        conf_E = np.concatenate([self.conf_E, probs_BK.max(-1)[wrong_B]])
        index_E = np.concatenate([self.index_E, start + np.flatnonzero(wrong_B)])
        images_EHWC = np.concatenate([self.images_EHWC, images_BHWC[wrong_B]])
        order = np.argsort(-conf_E, kind="stable")[: self.n]
        self.conf_E, self.index_E = conf_E[order], index_E[order]
        self.images_EHWC = images_EHWC[order]
