"""XLA flags the package sets for speed, before JAX starts a backend.

On the CPU, XLA hands matrix products and reductions to the YNNPACK library by default. For
reductions whose input is a broadcast product (the small-window attention's q * k summed over
the head dimension), a YNNPACK reduction needs its operands in memory, so XLA materialises the
broadcast, 16x the size of q (keras_example: ~100 ms of a ~1 s step on one core). Keeping
YNNPACK for products and convolutions only lets XLA fuse those reductions into loops.

The flag is added to ``XLA_FLAGS`` when ``swinjax`` is imported, only for the jaxlib versions it
was measured with, only if the user has not set the same flag, and never when
``SWINJAX_XLA_FLAGS=0``. It is read when JAX initialises its backends, so it has no effect in a
process that ran JAX computations before importing swinjax (results are the same either way).
It only concerns XLA's CPU backend.
"""

from __future__ import annotations

import os
from importlib import metadata

FLAGS = {"xla_cpu_experimental_ynn_fusion_type": "-reduce"}
TESTED_JAXLIB = ("0.10.",)


def _jaxlib_version() -> str:
    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return ""


def apply() -> list[str]:
    """Appends the package's flags to ``XLA_FLAGS``; returns the flags it added."""
    if os.environ.get("SWINJAX_XLA_FLAGS", "1") == "0":
        return []
    if not _jaxlib_version().startswith(TESTED_JAXLIB):
        return []
    current = os.environ.get("XLA_FLAGS", "")
    added = [f"--{k}={v}" for k, v in FLAGS.items() if f"--{k}=" not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
