"""Figures: the per-epoch history and a grid of test predictions (training), validation
accuracy against each swept value (sweeps).

Figures are ``matplotlib.figure.Figure`` objects written straight to PNG files (Agg, through
``Figure.savefig``): pyplot and the process-wide backend are never touched, so importing or
using this module in a notebook leaves its plotting as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def plot_history(epochs: Sequence[dict], path: str | Path) -> Path:
    """Train/validation loss and top-1 per epoch, as the seed plots them (two panels).

    ``epochs``: one dict per epoch with ``epoch`` and any of ``train_loss``, ``val_loss``,
    ``train_top1``, ``val_top1``.
    """
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    x = [e["epoch"] for e in epochs]
    for ax, metric, title in ((ax_loss, "loss", "loss"), (ax_acc, "top1", "top-1 accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            key = f"{split}_{metric}"
            pts = [(xi, e[key]) for xi, e in zip(x, epochs, strict=True) if key in e]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def plot_predictions(
    images_EHWC: np.ndarray,
    labels_E: np.ndarray,
    predicted_E: np.ndarray,
    class_names: Sequence[str] | None,
    path: str | Path,
    columns: int = 6,
) -> Path:
    """A grid of images, each titled with its true class over the predicted one (green when
    right, red when wrong): :func:`predictions_figure` written to ``path``."""
    return save_figure(
        predictions_figure(images_EHWC, labels_E, predicted_E, class_names, columns), path
    )


def predictions_figure(
    images_EHWC: np.ndarray,
    labels_E: np.ndarray,
    predicted_E: np.ndarray,
    class_names: Sequence[str] | None,
    columns: int = 6,
    confidences_E: np.ndarray | None = None,
) -> Figure:
    """The grid of :func:`plot_predictions`: titles ``"true: cat\npred: dog"`` (with
    ``confidences_E``, the predicted class's probability after it: ``"pred: dog (0.93)"``); a
    class without a name (or ``class_names`` None) shows its number."""
    n = len(images_EHWC)
    rows = max(1, -(-n // columns))
    fig = Figure(figsize=(1.8 * columns, 2.2 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    names = list(class_names) if class_names else []
    name = lambda k: names[k] if k < len(names) else str(k)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = np.asarray(images_EHWC[i])
        if img.dtype != np.uint8:
            img = np.clip(img, 0.0, 1.0)
        ax.imshow(
            img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None
        )
        true, pred = int(labels_E[i]), int(predicted_E[i])
        p = "" if confidences_E is None else f" ({float(confidences_E[i]):.2f})"
        ax.set_title(
            f"true: {name(true)}\npred: {name(pred)}{p}",
            fontsize=7,
            color="green" if true == pred else "red",
        )
    return fig


def plot_sweep(results: Sequence[dict], keys: Sequence[str], path: str | Path) -> Path:
    """Best validation top-1 of each sweep point against each swept value (one panel a key).

    ``results``: ``results.jsonl`` records (``point``, ``best_val_top1``); points without a
    score (diverged in the first epoch) are drawn as crosses at 0. Numeric values spanning a
    factor of 10 or more (all positive) get a log axis; other values are categories.
    """
    fig = Figure(figsize=(4.5 * len(keys), 3.6))
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        values = [r["point"][key] for r in results]
        scores = [r.get("best_val_top1") for r in results]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric:
            x = np.asarray(values, np.float64)
            if x.min() > 0 and x.max() >= 10 * x.min():
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            x = np.asarray([labels.index(str(v)) for v in values], np.float64)
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        ok = np.asarray([s is not None for s in scores])
        y = np.asarray([100.0 * s if s is not None else 0.0 for s in scores])
        if len(keys) == 1 and ok.sum() > 1:  # one swept key: join the points in order
            order = np.argsort(x[ok])
            ax.plot(x[ok][order], y[ok][order], "-", color="C0", alpha=0.5)
        ax.plot(x[ok], y[ok], "o", color="C0", label="best val top-1")
        if (~ok).any():
            ax.plot(x[~ok], y[~ok], "x", color="C3", label="diverged")
        ax.set_xlabel(key)
        ax.set_ylabel("validation top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Writes ``fig`` to ``path`` as a PNG (tight layout, 110 dpi); returns ``path``."""
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
