"""Process settings for speed, applied only by an explicit call: :func:`configure`.

Importing ``swinjax`` changes nothing in the process. The command-line programs
(``python -m swinjax.train/eval/bench/sweep``) call :func:`configure` first thing; a notebook or
script that wants the same speed calls it before its first JAX computation::

    import swinjax.runtime
    swinjax.runtime.configure(restart=False)   # XLA flags only; no restart of a notebook kernel

Neither setting changes any result.

1. An XLA flag, added to ``XLA_FLAGS``. On the CPU, XLA hands matrix products and reductions to
   the YNNPACK library by default. For reductions whose input is a broadcast product (the
   small-window attention's q * k summed over the head dimension) a YNNPACK reduction needs its
   operands in memory, so XLA materialises the broadcast, 16x the size of q (keras_example:
   ~100 ms of a ~1 s step on one core). Keeping YNNPACK for products and convolutions lets XLA
   fuse those reductions into loops. Added only for the jaxlib versions it was measured with and
   only if the user has not set the same flag. XLA reads it when JAX starts its backends: called
   after the first JAX computation, it has no effect (and says so).
2. Transparent huge pages for the C heap. XLA's CPU runtime takes its buffers from ``malloc``;
   with 4 KiB pages every step touches tens of thousands of fresh pages (the keras_example
   activations alone are 32 MiB each). glibc >= 2.35 backs its allocations with 2 MiB pages when
   started with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``; measured on the 2-core development
   VM, keras_example trains ~20% faster (330 -> 400 images/s) and evaluates ~20% faster. The
   variable must be set before the process starts, so ``configure(restart=True)`` (what the
   command-line programs do) re-executes the process once with it set, where it is not set
   already, the C library is glibc >= 2.35 and the kernel's transparent huge pages are enabled
   (``always`` or ``madvise``). To get it without a restart, start Python with the variable set.

``SWINJAX_RUNTIME_TUNING=0`` in the environment turns both off. TensorFlow's C++ log level
(``TF_CPP_MIN_LOG_LEVEL``, TensorFlow runs under tfds) is set to warnings-and-above unless set.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from absl import logging

XLA_FLAGS = {"xla_cpu_experimental_ynn_fusion_type": "-reduce"}
TESTED_JAXLIB = ("0.10.",)
HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _enabled() -> bool:
    return os.environ.get("SWINJAX_RUNTIME_TUNING", "1") != "0"


def _jaxlib_version() -> str:
    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return ""


def configure(*, restart: bool = True) -> list[str]:
    """Applies the speed settings of the module docstring to this process; returns the XLA flags
    it added. ``restart=True`` may re-execute the process (same command line) once, to start it
    with huge pages: for command-line programs, before they do anything else."""
    if not _enabled():
        return []
    if restart:
        reexec_with_hugepages()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _backends_started():
        logging.warning("runtime.configure() after JAX started its backends: XLA flags unchanged")
        return []
    return apply_xla_flags()


def _backends_started() -> bool:
    from jax._src import xla_bridge  # no public API tells whether backends exist yet

    return xla_bridge.backends_are_initialized()


def apply_xla_flags() -> list[str]:
    """Appends the package's flags to ``XLA_FLAGS``; returns the flags it added."""
    if not _enabled() or not _jaxlib_version().startswith(TESTED_JAXLIB):
        return []
    current = os.environ.get("XLA_FLAGS", "")
    added = [f"--{k}={v}" for k, v in XLA_FLAGS.items() if f"--{k}=" not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


def _thp_mode() -> str:
    try:
        with open(_THP_MODE) as f:
            text = f.read()
    except OSError:
        return ""
    return text[text.find("[") + 1 : text.find("]")] if "[" in text else ""


def hugepage_tunables(environ: dict[str, str], libc: tuple[str, str], thp_mode: str) -> str | None:
    """The ``GLIBC_TUNABLES`` value to restart with, or None to run as is."""
    if environ.get("SWINJAX_RUNTIME_TUNING", "1") == "0" or "GLIBC_TUNABLES" in environ:
        return None
    name, version = libc
    try:
        recent = tuple(int(v) for v in version.split(".")[:2]) >= (2, 35)
    except ValueError:
        recent = False
    if name != "glibc" or not recent or thp_mode not in ("always", "madvise"):
        return None
    return HUGEPAGE_TUNABLE


def reexec_with_hugepages() -> None:
    """For command-line programs, before anything else runs: restarts the process once with
    ``GLIBC_TUNABLES`` set for transparent huge pages (see the module docstring)."""
    if platform.system() != "Linux":
        return
    value = hugepage_tunables(dict(os.environ), platform.libc_ver(), _thp_mode())
    if value is None:
        return
    logging.info("restarting with GLIBC_TUNABLES=%s (SWINJAX_RUNTIME_TUNING=0: don't)", value)
    os.environ["GLIBC_TUNABLES"] = value
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    os.execv(sys.executable, argv)
