"""Writing predictions and embeddings: JSON lines, CSV, ``.npz``.

- JSON lines (stdout or ``.jsonl``): one object per file, the row as
  :class:`swinjax.serve.Predictor` gives it (``path``, ``labels``, ``classes``,
  ``probabilities``, ``error``).
- CSV (``.csv``): a header, then one line per file: ``path``, ``error`` (empty for a classified
  file), then ``class_1``, ``probability_1``, ... ``class_k``, ``probability_k``, best first.
- ``.npz`` (embeddings): ``paths`` (the readable files, row i of every array), ``pooled``
  ``[N, C]`` or ``stage_0`` .. ``stage_{S-1}`` ``[N, H_s, W_s, C_s]``, ``failed_paths`` and
  ``failed_reasons``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from swinjax.errors import ConfigError

ROW_SUFFIXES = (".jsonl", ".csv")
FEATURE_SUFFIXES = (".npz",)


def check_out(out: str | None, *, features: bool, overwrite: bool = False) -> None:
    """Refuses, before any work, an ``--out`` whose suffix names no format this output has,
    whose folder does not exist, or that exists already (unless ``overwrite``); embeddings need
    a ``.npz`` file."""
    if out is None:
        if features:
            raise ConfigError("--features needs --out FILE.npz (the embeddings are arrays)")
        return
    suffixes = FEATURE_SUFFIXES if features else ROW_SUFFIXES
    if Path(out).suffix.lower() not in suffixes:
        what = "embeddings (--features)" if features else "predictions"
        raise ConfigError(f"--out {out}: {what} are written to {' or '.join(suffixes)} files")
    folder = Path(out).expanduser().parent
    if not folder.is_dir():
        raise ConfigError(f"--out {out}: folder {folder} does not exist; create it first")
    if Path(out).expanduser().exists() and not overwrite:
        raise ConfigError(
            f"--out {out} exists already; name another file, or add --overwrite to replace it"
        )


@contextlib.contextmanager
def _replacing(out: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """A file object whose contents replace ``out`` only once it is complete and closed (a
    temporary file beside it, renamed), so that a failure leaves any earlier ``out`` whole."""
    final = Path(out).expanduser()
    partial = final.with_name(f".{final.name}.partial")
    try:
        with open(partial, mode, **({"newline": ""} if "b" not in mode else {})) as f:
            yield f
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def write_rows(rows: Sequence[dict[str, Any]], out: str | None, topk: int) -> None:
    """``rows`` as JSON lines on stdout (``out`` None) or into ``out`` (``.jsonl``/``.csv``)."""
    if out is None:
        _write_jsonl(rows, sys.stdout)
        sys.stdout.flush()
        return
    with _replacing(out) as f:
        if Path(out).suffix.lower() == ".csv":
            _write_csv(rows, f, topk)
        else:
            _write_jsonl(rows, f)


def _write_jsonl(rows: Sequence[dict[str, Any]], f: TextIO) -> None:
    for row in rows:
        f.write(json.dumps(row) + "\n")


def _write_csv(rows: Sequence[dict[str, Any]], f: TextIO, topk: int) -> None:
    k = max((len(r["classes"]) for r in rows), default=0) or topk  # topk or the class count
    header = ["path", "error"]
    for i in range(1, k + 1):
        header += [f"class_{i}", f"probability_{i}"]
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
        line = [row["path"], row["error"] or ""]
        for name, p in zip(row["classes"], row["probabilities"], strict=True):
            line += [name, f"{p:.6g}"]
        writer.writerow(line + [""] * (len(header) - len(line)))


def write_embeddings(
    out: str, paths: Sequence[str], arrays: dict[str, np.ndarray], failed: Sequence[tuple]
) -> None:
    """The ``.npz`` of the module docstring."""
    with _replacing(out, "wb") as f:
        _save_npz(f, paths, arrays, failed)


def _save_npz(f: Any, paths: Sequence[str], arrays: dict, failed: Sequence[tuple]) -> None:
    np.savez(
        f,
        paths=np.asarray(list(paths), dtype=str),
        failed_paths=np.asarray([p for p, _ in failed], dtype=str),
        failed_reasons=np.asarray([r for _, r in failed], dtype=str),
        **arrays,
    )
