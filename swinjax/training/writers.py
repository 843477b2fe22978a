"""Metric writers of a training run: clu's default writer (TensorBoard event files and the log)
plus ``metrics.jsonl``, one JSON object a line, which the plots and the tests read back.

Names are ``KIND/NAME`` (``epoch/val_top1``, ``train_step/loss``, ``test/top1``); TensorBoard
shows them as they are, and ``metrics.jsonl`` stores one record per kind and step:
``{"step": 32, "kind": "epoch", "val_top1": 0.41, ...}``. Names without a kind (clu's
``steps_per_sec``, ``uptime``) are of kind ``progress``.

``clu.metric_writers`` imports TensorFlow (for its summary writer), which sets environment
variables of its own; it is imported when a writer is created, never when swinjax is imported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def create_writer(workdir: Path, enabled: bool = True) -> Any:
    """A clu ``MetricWriter`` for ``workdir``: TensorBoard, the log and ``metrics.jsonl``.

    ``enabled=False`` (every process but the first of a multi-host run): the log only.
    """
    from clu import metric_writers

    default = metric_writers.create_default_writer(
        str(workdir / TENSORBOARD_DIR), just_logging=not enabled, asynchronous=True
    )
    if not enabled:
        return default
    return metric_writers.MultiWriter([default, _jsonl_writer(workdir / METRICS_FILE)])


def _jsonl_writer(path: Path) -> Any:
    from clu import metric_writers

    class JsonlWriter(metric_writers.LoggingWriter):
        """Scalars appended to a JSON-lines file; other kinds are logged (clu's LoggingWriter)."""

        def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
            records: dict[str, dict[str, Any]] = {}
            for name, value in scalars.items():
                kind, _, key = name.rpartition("/")
                records.setdefault(kind or "progress", {})[key] = float(value)
            with path.open("a") as f:
                for kind, values in records.items():
                    f.write(json.dumps({"step": int(step), "kind": kind, **values}) + "\n")

    return JsonlWriter()


def with_kind(kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"loss": 1.0}`` -> ``{"KIND/loss": 1.0}``."""
    return {f"{kind}/{k}": v for k, v in values.items()}


def read_records(workdir: Path, kind: str) -> list[dict[str, Any]]:
    """The ``metrics.jsonl`` records of ``kind``, in the order written."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["kind"] == kind]
