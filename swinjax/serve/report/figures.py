"""The figures of the evaluation report: the confusion matrix, the reliability diagram, the most
confident mistakes and the per-class F1. ``matplotlib.figure.Figure`` objects, written through
:func:`swinjax.training.plots.save_figure` (Agg): pyplot and the process-wide backend are never
touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from swinjax.training import plots

# Above this many classes the confusion matrix has no tick labels (they could not be read).
MAX_TICK_LABELS = 200
# Up to this many classes each cell of the confusion matrix shows its percentage.
MAX_CELL_LABELS = 20


def recall_order(confusion_KK: np.ndarray) -> np.ndarray:
    """The classes by recall, worst first (ties: by class number): the order of the confusion
    matrix's rows and columns, so the classes that fail most meet in its top-left corner."""
    support_K = np.maximum(confusion_KK.sum(1), 1)
    recall_K = np.diag(confusion_KK) / support_K
    return np.lexsort((np.arange(len(recall_K)), recall_K))


def _tick_size(num_classes: int) -> float:
    return float(np.clip(480 / max(num_classes, 1), 3, 9))


def confusion_figure(
    confusion_KK: np.ndarray,
    class_names: Sequence[str],
    top_confusions: Sequence[dict[str, Any]] = (),
) -> Figure:
    """The confusion matrix, each row divided by its class's count (so a row shows where that
    class's examples went), rows and columns in :func:`recall_order`, class names as tick labels
    (up to :data:`MAX_TICK_LABELS` classes, smaller as there are more), a square-root colour
    scale; beside it the largest confusions as a list."""
    K = len(class_names)
    order = recall_order(confusion_KK)
    rows_KK = confusion_KK[order][:, order].astype(np.float64)
    rows_KK /= np.maximum(rows_KK.sum(1, keepdims=True), 1)
    side = float(np.clip(0.11 * K + 3, 5, 16))
    fig = Figure(figsize=(side + 3.2, side))
    ax, text_ax = fig.subplots(1, 2, width_ratios=(side, 3.2))
    # A square-root colour scale: confusions of a few percent stay visible beside the diagonal.
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    image = ax.imshow(rows_KK, cmap="Blues", norm=norm, interpolation="nearest")
    bar_ax = ax.inset_axes((1.02, 0.0, 0.025, 1.0))
    fig.colorbar(image, cax=bar_ax, label="share of the true class")
    if K <= MAX_TICK_LABELS:
        names = [str(class_names[k]) for k in order]
        size = _tick_size(K)
        ax.set_xticks(range(K), names, rotation=90, fontsize=size)
        ax.set_yticks(range(K), names, fontsize=size)
    if K <= MAX_CELL_LABELS:
        for (i, j), share in np.ndenumerate(rows_KK):
            if share >= 0.005:
                color = "white" if share > 0.45 else "black"
                ax.text(
                    j, i, f"{100 * share:.0f}", ha="center", va="center", fontsize=7, color=color
                )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (worst recall first)")
    ax.set_title("confusion matrix (% of each true class)")
    text_ax.axis("off")
    lines = [f"{c['count']:>5}  {c['true_name']} -> {c['predicted_name']}" for c in top_confusions]
    text_ax.set_title("top confusions (count)", fontsize=9, loc="left")
    text_ax.text(
        0.05,
        1.0,
        "\n".join(lines[:25]) or "none",
        va="top",
        ha="left",
        family="monospace",
        fontsize=7,
        transform=text_ax.transAxes,
    )
    return fig


def reliability_figure(bins: Sequence[dict[str, Any]], ece: float) -> Figure:
    """The reliability diagram (each confidence bin's accuracy against the diagonal, the gap to
    the bin's mean confidence hatched) over the histogram of the top-1 confidences; the ECE in
    the title."""
    fig = Figure(figsize=(5.5, 6.5))
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    lo = np.asarray([b["lo"] for b in bins])
    width = np.asarray([b["hi"] - b["lo"] for b in bins])
    filled = [b for b in bins if b["count"]]
    x = np.asarray([b["lo"] for b in filled])
    w = np.asarray([b["hi"] - b["lo"] for b in filled])
    acc = np.asarray([b["accuracy"] for b in filled])
    conf = np.asarray([b["confidence"] for b in filled])
    ax.bar(x, acc, width=w, align="edge", color="C0", edgecolor="k", lw=0.5, label="accuracy")
    gap = {"fill": False, "hatch": "//", "edgecolor": "C3", "lw": 0.5, "label": "gap to confidence"}
    ax.bar(x, conf - acc, bottom=acc, width=w, align="edge", **gap)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    ax.set_title(f"reliability (ECE = {100 * ece:.2f}%)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    counts = np.asarray([b["count"] for b in bins])
    hist.bar(lo, counts, width=width, align="edge", color="C7", edgecolor="k", lw=0.5)
    hist.set(xlabel="confidence (top-1 probability)", ylabel="examples")
    hist.grid(alpha=0.3)
    return fig


def mistakes_figure(
    images_EHWC: np.ndarray,
    labels_E: np.ndarray,
    probs_EK: np.ndarray,
    class_names: Sequence[str],
    columns: int = 6,
) -> Figure:
    """The grid of the given mistakes (most confident first): each image as evaluation read it,
    titled ``true: X / pred: Y (p)`` (:func:`swinjax.training.plots.predictions_figure`)."""
    fig = plots.predictions_figure(
        images_EHWC,
        labels_E,
        probs_EK.argmax(-1),
        class_names,
        columns=columns,
        confidences_E=probs_EK.max(-1),
    )
    fig.suptitle("most confident mistakes", fontsize=10)
    return fig


def per_class_figure(per_class: Sequence[dict[str, Any]]) -> Figure:
    """Each class's F1 as a horizontal bar, worst at the top, its name beside it."""
    rows = sorted(per_class, key=lambda r: (r["f1"], r["class"]))
    K = len(rows)
    fig = Figure(figsize=(6.5, float(np.clip(0.16 * K + 1.2, 3, 40))))
    ax = fig.subplots()
    y = np.arange(K)
    ax.barh(y, [r["f1"] for r in rows], color="C0")
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=_tick_size(K) if K > 30 else 8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="F1", title="per-class F1 (worst first)")
    ax.grid(axis="x", alpha=0.3)
    return fig
