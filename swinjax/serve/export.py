"""Exporting a saved model, one format at a time (``python -m swinjax.export``).

    restored = inference.restore_params("workdirs/demo")
    record = export_model(restored, "stablehlo", Path("exports/demo_hlo"))

Formats (each in a module of its own): ``timm`` (:mod:`swinjax.serve.export_timm`),
``stablehlo`` (:mod:`swinjax.serve.export_stablehlo`), ``savedmodel``
(:mod:`swinjax.serve.export_savedmodel`), ``onnx`` (:mod:`swinjax.serve.export_onnx`). The
output is a directory; an existing non-empty one is refused unless ``overwrite``, and replaced
only once the new export is complete.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from swinjax.errors import ConfigError
from swinjax.training.inference import Restored

FORMATS = ("timm", "stablehlo", "savedmodel", "onnx")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # jax.export's names


def check_request(
    fmt: str, out: str | Path, overwrite: bool = False, platforms: tuple[str, ...] = ()
) -> Path:
    """``out`` as a Path, after refusing an unknown format, ``platforms`` for a format other
    than stablehlo, an ``out`` that is a file, or a non-empty ``out`` directory without
    ``overwrite`` (nothing is read or written here)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    unknown = sorted(set(platforms) - set(PLATFORMS))
    if unknown:
        raise ConfigError(f"unknown --platforms {unknown}; choose from {', '.join(PLATFORMS)}")
    if platforms and fmt != "stablehlo":
        raise ConfigError(f"--platforms applies to --format stablehlo only; leave it out for {fmt}")
    if fmt == "onnx":
        from swinjax.serve.export_onnx import check_onnx

        check_onnx()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory to write the export into")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {out} exists and is not empty; choose another directory, or pass "
            "--overwrite to replace it"
        )
    return out


def export_model(
    restored: Restored,
    fmt: str,
    out: str | Path,
    *,
    overwrite: bool = False,
    platforms: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Writes ``restored`` in format ``fmt`` into the directory ``out`` (replaced where
    ``overwrite``); returns a record: format, out, files, step, ema, seconds. ``platforms``:
    where a stablehlo export may run (e.g. ``("cpu", "cuda")``; empty: JAX's default backend).

    The export is written beside ``out`` first and moved into place once complete, so a
    failure leaves an old ``out`` as it was.
    """
    out = check_request(fmt, out, overwrite, platforms)
    start = time.perf_counter()
    if fmt == "timm":  # before any work
        from swinjax.serve.export_timm import check_timm

        check_timm(restored)
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        files = _write(restored, fmt, partial, platforms)
        if out.is_dir():
            shutil.rmtree(out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return {
        "format": fmt,
        "out": str(out),
        "files": [str(p.relative_to(partial)) for p in files],
        "step": restored.step,
        "ema": restored.ema,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _write(restored: Restored, fmt: str, out: Path, platforms: tuple[str, ...]) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "stablehlo":
        from swinjax.serve.export_stablehlo import export_stablehlo

        return export_stablehlo(restored, out, platforms=platforms or None)
    return _exporter(fmt)(restored, out)


def _exporter(fmt: str):
    if fmt == "timm":
        from swinjax.serve.export_timm import export_timm

        return export_timm
    if fmt == "savedmodel":
        from swinjax.serve.export_savedmodel import export_savedmodel

        return export_savedmodel
    from swinjax.serve.export_onnx import export_onnx

    return export_onnx
