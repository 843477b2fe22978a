"""The numbers of the evaluation report, from every example's probabilities and label (no
plotting): per-class precision, recall, F1 and support (scikit-learn's), the confusion matrix,
its largest off-diagonal cells, and calibration (reliability bins, expected calibration error).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as sk_metrics

# Equal-width confidence bins of the reliability diagram and of the ECE (Guo et al., 2017).
NUM_BINS = 15


def confusion(labels_E: np.ndarray, predicted_E: np.ndarray, num_classes: int) -> np.ndarray:
    """The confusion matrix ``[K, K]`` of counts: row the true class, column the predicted one."""
    return sk_metrics.confusion_matrix(labels_E, predicted_E, labels=np.arange(num_classes))


def per_class(
    labels_E: np.ndarray, predicted_E: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per class: ``class``, ``name``, ``precision``, ``recall``, ``f1``, ``support``
    (scikit-learn's ``precision_recall_fscore_support``; 0 where undefined) and ``accuracy``,
    the share of the class's examples classified right (its recall)."""
    labels = np.arange(len(class_names))
    p, r, f1, support = sk_metrics.precision_recall_fscore_support(
        labels_E, predicted_E, labels=labels, zero_division=0
    )
    return [
        {
            "class": int(k),
            "name": str(class_names[k]),
            "precision": float(p[k]),
            "recall": float(r[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "accuracy": float(r[k]),
        }
        for k in labels
    ]


def averages(labels_E: np.ndarray, predicted_E: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Macro (every class alike) and support-weighted averages of precision, recall and F1."""
    out = {}
    for average in ("macro", "weighted"):
        p, r, f1, _ = sk_metrics.precision_recall_fscore_support(
            labels_E, predicted_E, labels=np.arange(num_classes), average=average, zero_division=0
        )
        out[average] = {"precision": float(p), "recall": float(r), "f1": float(f1)}
    return out


def top_confusions(
    confusion_KK: np.ndarray, class_names: Sequence[str], n: int = 20
) -> list[dict[str, Any]]:
    """The ``n`` largest off-diagonal cells, largest first: ``true``, ``predicted`` (numbers),
    their names, ``count`` and ``share`` (of the true class's examples)."""
    off_KK = confusion_KK.astype(np.int64).copy()
    np.fill_diagonal(off_KK, 0)
    flat = np.argsort(-off_KK, axis=None, kind="stable")[:n]
    rows = []
    for true, pred in zip(*np.unravel_index(flat, off_KK.shape), strict=True):
        count = int(off_KK[true, pred])
        if count == 0:
            break
        rows.append(
            {
                "true": int(true),
                "predicted": int(pred),
                "true_name": str(class_names[true]),
                "predicted_name": str(class_names[pred]),
                "count": count,
                "share": count / max(int(confusion_KK[true].sum()), 1),
            }
        )
    return rows


def calibration(
    probs_EK: np.ndarray, labels_E: np.ndarray, num_bins: int = NUM_BINS
) -> tuple[float, list[dict[str, Any]]]:
    """``(ECE, bins)``: the top-1 confidence (highest probability) binned into ``num_bins``
    equal-width bins ``(lo, hi]``; each bin's ``count``, ``accuracy`` (share right) and mean
    ``confidence``; ECE = sum over bins of count / N * |accuracy - confidence|."""
    confidence_E = probs_EK.max(-1).astype(np.float64)
    correct_E = (probs_EK.argmax(-1) == labels_E).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bin_E = np.searchsorted(edges[1:-1], confidence_E, side="left")  # (lo, hi]
    ece, bins = 0.0, []
    for b in range(num_bins):
        in_bin = bin_E == b
        count = int(in_bin.sum())
        row = {"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count}
        if count:
            row["accuracy"] = float(correct_E[in_bin].mean())
            row["confidence"] = float(confidence_E[in_bin].mean())
            ece += count / len(labels_E) * abs(row["accuracy"] - row["confidence"])
        bins.append(row)
    return float(ece), bins


def report_numbers(
    probs_EK: np.ndarray, labels_E: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Everything ``report.json`` holds beside the evaluation's record: ``confusion`` (the
    matrix, a list of rows), ``per_class``, ``averages``, ``top_confusions``, ``ece``,
    ``calibration_bins``, ``num_examples`` and ``top1`` (from these predictions)."""
    predicted_E = probs_EK.argmax(-1)
    num_classes = probs_EK.shape[-1]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    confusion_KK = confusion(labels_E, predicted_E, num_classes)
    ece, bins = calibration(probs_EK, labels_E)
    return {
        "num_examples": int(len(labels_E)),
        "top1": float(np.trace(confusion_KK) / max(len(labels_E), 1)),
        "ece": ece,
        "averages": averages(labels_E, predicted_E, num_classes),
        "per_class": per_class(labels_E, predicted_E, class_names),
        "top_confusions": top_confusions(confusion_KK, class_names),
        "calibration_bins": bins,
        "confusion": confusion_KK.tolist(),
    }
