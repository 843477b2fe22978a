"""Timing shared by the peer benchmarks (standard library only: each peer runs in a virtual
environment of its own, without swinjax).

A benchmark hands :func:`images_per_second` a function that runs one step on a fixed batch and
returns only once the step is done (both peers' steps return host values, so they are
synchronous); it is called ``warmup`` times untimed (compilation, allocator warm-up), then
``steps`` times under one wall clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable


def images_per_second(step: Callable[[], object], batch: int, steps: int, warmup: int) -> dict:
    """``{"images_per_s", "ms_per_step"}`` of ``steps`` calls of ``step`` after ``warmup``."""
    if steps < 1 or warmup < 0:
        raise SystemExit(f"--steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return {
        "images_per_s": round(steps * batch / seconds, 1),
        "ms_per_step": round(1000 * seconds / steps, 1),
    }


def report(record: dict, as_json: bool) -> None:
    """One readable line per measurement, or with ``as_json`` the record as one JSON line."""
    if as_json:
        print(json.dumps(record), flush=True)
        return
    name = record["peer"]
    for kind in ("train", "infer"):
        if kind in record:
            r = record[kind]
            print(
                f"{name} {kind}: {r['images_per_s']} images/s ({r['ms_per_step']} ms/step, "
                f"batch {record['batch']})",
                flush=True,
            )
