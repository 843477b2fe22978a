"""Classifying and embedding image files with a trained workdir, loaded once.

    predictor = Predictor.load("workdirs/demo")          # the latest checkpoint; best=True
    rows = predictor.classify(["photos/", "more/*.png"])  # one dict per file, in order
    emb = predictor.embed(["photos/"], kind="pooled")     # Embeddings: paths, arrays, failed

A row is ``{"path", "labels", "classes", "probabilities", "error"}``: the top-k class indices,
their names and softmax probabilities (best first), ``error`` None; for a file that does not
decode, ``error`` holds the reason and the lists are empty. Batches of ``batch_size`` (padded to
a multiple of the devices; one compiled program) run data parallel over every local device.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from swinjax.data.batching import padded_batch_size
from swinjax.data.image_files import find_images
from swinjax.errors import ConfigError
from swinjax.serve.images import ImageView, PreparedImage, prepare_images
from swinjax.training import evaluation, parallel, steps
from swinjax.training.inference import InferenceModel, inference_state, restore_for_inference

FEATURE_KINDS = ("pooled", "stages")


@dataclasses.dataclass
class Embeddings:
    """Features of the readable files (row i of every array is ``paths[i]``) and the others."""

    paths: list[str]
    arrays: dict[str, np.ndarray]  # "pooled" [N, C], or "stage_0".. "stage_3" [N, H, W, C]
    failed: list[tuple[str, str]]  # (path, reason) of the files that do not decode


class Predictor:
    """A restored model with its preprocessing, batch size and test-time augmentation."""

    def __init__(
        self,
        model: InferenceModel,
        *,
        batch_size: int = 64,
        tta: bool = False,
        tta_shift: int | None = None,
        ema: bool = False,
    ):
        if batch_size < 1:
            raise ConfigError(f"batch size {batch_size}: must be >= 1")
        state = inference_state(model, ema)
        self.model = model
        self.state = state
        self.view = ImageView.of(model)
        self.batch_size = padded_batch_size(batch_size, model.mesh.size)
        self.tta, self.tta_shift = evaluation.tta_settings(model.config, tta, tta_shift)

    @classmethod
    def load(cls, workdir: str | Path, *, best: bool = False, **kwargs: Any) -> Predictor:
        """The predictor of ``workdir``'s latest checkpoint (``best``: the best by validation
        top-1), or of ``WORKDIR/checkpoints/STEP``; ``kwargs`` as the constructor's."""
        return cls(restore_for_inference(workdir, best=best), **kwargs)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.class_names

    def logits(
        self, paths: Sequence[str | os.PathLike], *, progress: bool | None = False
    ) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """``(readable paths, their logits [N, K], [(path, reason)] of the others)``; ``paths``
        as :func:`swinjax.data.image_files.find_images` takes them."""
        good, out, failed = [], [], []
        for items, logits in self._batches(paths, self._predict, progress):
            for item in items:
                if item.error is None:
                    good.append(item.path)
                else:
                    failed.append((item.path, item.error))
            if logits is not None:
                out.append(logits)
        return good, _concat(out, (0, len(self.class_names))), failed

    def classify(
        self, paths: Sequence[str | os.PathLike], topk: int = 5, *, progress: bool | None = False
    ) -> list[dict[str, Any]]:
        """One row per file (see the module docstring), in the order :func:`find_images` gives."""
        if topk < 1:
            raise ConfigError(f"--topk {topk}: must be >= 1")
        k = min(topk, len(self.class_names))
        rows = []
        for items, logits in self._batches(paths, self._predict, progress):
            results = iter(() if logits is None else _softmax(logits))
            for item in items:
                rows.append(self._row(item, None if item.error else next(results), k))
        return rows

    def embed(
        self,
        paths: Sequence[str | os.PathLike],
        kind: str = "pooled",
        *,
        progress: bool | None = False,
    ) -> Embeddings:
        """Features of every readable file: ``kind="pooled"`` the head's input, ``"stages"``
        the output map of every stage (NHWC)."""
        if kind not in FEATURE_KINDS:
            raise ConfigError(f"--features {kind!r}: use one of {FEATURE_KINDS}")
        good, parts, failed = [], [], []

        def run(images: Any) -> dict[str, np.ndarray]:
            out = steps.features(self.state, images, kind=kind)
            if kind == "pooled":
                return {"pooled": out}
            return {f"stage_{i}": m for i, m in enumerate(out)}

        for items, arrays in self._batches(paths, run, progress):
            good += [item.path for item in items if item.error is None]
            failed += [(item.path, item.error) for item in items if item.error is not None]
            if arrays is not None:
                parts.append(arrays)
        keys = parts[0].keys() if parts else []
        arrays = {key: np.concatenate([p[key] for p in parts]) for key in keys}
        return Embeddings(paths=good, arrays=arrays, failed=failed)

    def _predict(self, images: Any) -> Any:
        return steps.predict(self.state, images, tta=self.tta, tta_shift=self.tta_shift)

    def _row(self, item: PreparedImage, probs: np.ndarray | None, k: int) -> dict[str, Any]:
        if probs is None:
            return {
                "path": item.path,
                "labels": [],
                "classes": [],
                "probabilities": [],
                "error": item.error,
            }
        top = np.argsort(-probs, kind="stable")[:k]
        return {
            "path": item.path,
            "labels": [int(i) for i in top],
            "classes": [self.class_names[i] for i in top],
            "probabilities": [float(probs[i]) for i in top],
            "error": None,
        }

    def _batches(
        self, paths: Sequence[str | os.PathLike], fn: Callable[[Any], Any], progress: bool | None
    ) -> Iterator[tuple[list[PreparedImage], Any]]:
        """``(the files of a batch, in order, the unreadable ones among them; fn's output for the
        readable ones, as numpy)``, batch after batch."""
        files = find_images(paths)
        sharding = parallel.batch_sharding(self.model.mesh)
        bar = tqdm(total=len(files), unit="img", disable=None if progress is None else not progress)
        pending: list[PreparedImage] = []
        readable = 0
        with bar:
            for item in prepare_images(files, self.view, chunk=4 * self.batch_size):
                pending.append(item)
                readable += item.error is None
                if readable == self.batch_size:
                    yield pending, self._run(pending, fn, sharding)
                    bar.update(len(pending))
                    pending, readable = [], 0
            if pending:
                yield pending, self._run(pending, fn, sharding)
                bar.update(len(pending))

    def _run(self, items: list[PreparedImage], fn: Callable[[Any], Any], sharding: Any) -> Any:
        """``fn``'s output (numpy) for the readable files of ``items``; None where none is."""
        images = [p.image_HWC for p in items if p.error is None]
        if not images:
            return None
        batch_BHWC = np.zeros((self.batch_size, *self.view.image_shape), np.uint8)
        batch_BHWC[: len(images)] = np.stack(images)
        out = fn(parallel.put_batch(batch_BHWC, sharding))
        return jax.tree.map(lambda a: np.asarray(jax.device_get(a))[: len(images)], out)


def _softmax(logits_BK: np.ndarray) -> np.ndarray:
    z = np.exp(logits_BK - logits_BK.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _concat(parts: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts) if parts else np.zeros(empty_shape, np.float32)


def predict_files(
    workdir: str | Path, paths: Sequence[str | os.PathLike], topk: int = 5, **kwargs: Any
) -> list[dict[str, Any]]:
    """One call for a notebook: ``Predictor.load(workdir, **kwargs).classify(paths, topk)``."""
    return Predictor.load(workdir, **kwargs).classify(paths, topk)
