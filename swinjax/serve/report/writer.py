"""A checkpoint evaluated on one split with its report written: :func:`evaluate_with_report`
(what ``python -m swinjax.eval --report DIR`` runs) and :func:`write_report` (the files, from
predictions already made)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swinjax.errors import ConfigError
from swinjax.serve.report import figures, metrics
from swinjax.serve.report.html import index_html
from swinjax.training import evaluation, plots

REPORT_FILE = "report.json"
# The files a report writes: caption -> file name (index.html shows them in this order).
FIGURES = {
    "confusion matrix": "confusion.png",
    "calibration": "reliability.png",
    "most confident mistakes": "mistakes.png",
    "per-class F1": "per_class.png",
}
# How many of the most confident mistakes the grid shows.
NUM_MISTAKES = 24


def check_report_dir(path: str | Path, overwrite: bool = False) -> Path:
    """``path`` checked as a report's directory, before any work: refused (ConfigError) where it
    is a file, or holds files but no report; a previous report there is replaced only with
    ``overwrite``. Nothing is created here (:func:`write_report` does)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--report {path} is a file; name a directory for the report")
    if path.is_dir() and any(path.iterdir()):
        if not (path / REPORT_FILE).is_file():
            raise ConfigError(
                f"--report {path} holds other files (no {REPORT_FILE}); name a new or empty "
                "directory for the report"
            )
        if not overwrite:
            raise ConfigError(
                f"--report {path} already holds a report; name a new directory, or add "
                "--overwrite_report to replace it"
            )
    return path


def write_report(
    report_dir: str | Path,
    record: dict[str, Any],
    predictions: evaluation.SplitPredictions,
    class_names: Sequence[str],
    title: str = "evaluation report",
) -> dict[str, Any]:
    """Writes ``report.json``, the figures and ``index.html`` into ``report_dir`` (which
    :func:`check_report_dir` accepted; created if missing); returns the report. ``record``: the
    evaluation's (``evaluate_checkpoint``'s) record, the report's ``overall`` with the ``ece``
    added."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    numbers = metrics.report_numbers(predictions.probs_EK, predictions.labels_E, class_names)
    confusion_KK = numbers.pop("confusion")
    report = {
        "overall": {**record, "ece": numbers.pop("ece")},
        **numbers,
        "mistakes": predictions.kept_E.tolist(),
        "confusion": confusion_KK,
    }
    (report_dir / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    kept = predictions.kept_E
    drawn = {
        "confusion.png": figures.confusion_figure(
            np.asarray(confusion_KK), class_names, report["top_confusions"]
        ),
        "reliability.png": figures.reliability_figure(
            report["calibration_bins"], report["overall"]["ece"]
        ),
        "mistakes.png": figures.mistakes_figure(
            predictions.images_EHWC,
            predictions.labels_E[kept],
            predictions.probs_EK[kept],
            class_names,
        ),
        "per_class.png": figures.per_class_figure(report["per_class"]),
    }
    for name, fig in drawn.items():
        plots.save_figure(fig, report_dir / name)
    (report_dir / "index.html").write_text(index_html(report, FIGURES, title))
    return report


def evaluate_with_report(
    path: str | Path,
    split: str = "test",
    *,
    report_dir: str | Path,
    overwrite: bool = False,
    data_dir: str | None = None,
    best: bool = False,
    batch_size: int | None = None,
    tta: bool = False,
    tta_shift: int | None = None,
) -> dict[str, Any]:
    """:func:`swinjax.training.evaluation.evaluate_checkpoint` (same arguments, same record,
    plus ``report``: the directory) with the report of the same predictions written into
    ``report_dir`` (checked first: :func:`check_report_dir`)."""
    report_dir = check_report_dir(report_dir, overwrite)
    restored = evaluation.restore_checkpoint_split(path, split, data_dir=data_dir, best=best)
    record = evaluation.evaluate_restored(
        restored, batch_size=batch_size, tta=tta, tta_shift=tta_shift
    )
    config = restored.config
    predictions = evaluation.split_predictions(
        restored.state,
        restored.split,
        evaluation.eval_batch_size(config, batch_size),
        restored.mesh,
        tta=record["tta"],
        tta_shift=record["tta_shift"],
        keep_mistakes=NUM_MISTAKES,
    )
    num_classes = predictions.probs_EK.shape[-1]
    names = list(restored.split.class_names) or [str(k) for k in range(num_classes)]
    title = f"{restored.workdir.name}: step {record['step']}, split {split}"
    write_report(report_dir, record, predictions, names, title=title)
    return {**record, "report": str(report_dir)}
