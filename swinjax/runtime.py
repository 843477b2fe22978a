"""Process settings for speed and a quiet start, applied only by an explicit call.

Importing ``swinjax`` changes nothing in the process. Each program (``python -m swinjax.train``,
``eval``, ``sweep``, ``bench``, ``presets``) calls :func:`prepare_process` as its first statement,
before JAX, TensorFlow or the package's heavy modules are imported; this module imports only the
standard library, so that call costs nothing. A notebook or script that wants the XLA flag calls
:func:`configure` before its first JAX computation::

    from swinjax import runtime
    runtime.configure(restart=False)   # the XLA flag only; a notebook kernel is never restarted

Neither setting changes any result; ``SWINJAX_RUNTIME_TUNING=0`` in the environment turns both
off. What they gain is measured in docs/performance.md ("Huge pages and the XLA flag").

1. An XLA flag, added to ``XLA_FLAGS``. On the CPU, XLA hands matrix products and reductions to
   the YNNPACK library. For a reduction whose input is a broadcast product (the small-window
   attention's q * k summed over the head dimension) YNNPACK needs its operands in memory, so XLA
   materialises the broadcast, 16x the size of q. Keeping YNNPACK for products and convolutions
   lets XLA fuse those reductions into loops. Added only for the jaxlib versions it was measured
   with (read from the installed package's metadata, without importing it) and only if the user
   has not set the same flag. XLA reads ``XLA_FLAGS`` when JAX starts its backends, so the flag
   has no effect after the first JAX computation.
2. Transparent huge pages for the C heap. XLA's CPU runtime takes its buffers from ``malloc``;
   with 4 KiB pages every step touches tens of thousands of fresh pages. glibc >= 2.35 backs its
   allocations with 2 MiB pages when the process starts with
   ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``. The variable must be set before the process starts,
   so :func:`prepare_process` re-executes the program once with it (one line on stderr says so)
   where it is not set already, the C library is glibc >= 2.35, the kernel's transparent huge
   pages are ``always`` or ``madvise``, and no debugger or profiler is attached (it would lose
   the process). To get it without a restart, start Python with the variable set.

:func:`prepare_process` also quiets the C++ logs of TensorFlow (which runs under tfds) and XLA
to warnings and errors (``TF_CPP_MIN_LOG_LEVEL=2``, where the user has not set it): the programs,
not the library, choose the log levels of their process.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from importlib import metadata

TUNING_VARIABLE = "SWINJAX_RUNTIME_TUNING"
XLA_FLAGS = {"xla_cpu_experimental_ynn_fusion_type": "-reduce"}
TESTED_JAXLIB = ("0.10.",)
HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
# The programs' log level, where unset: TensorFlow's and XLA's C++ warnings and errors only (no
# CPU-feature or oneDNN notices, no "All log messages before absl::InitializeLog()" line).
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2"}
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"
_DEBUGGER_MODULES = ("pydevd", "debugpy")


def _enabled(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    return environ.get(TUNING_VARIABLE, "1") != "0"


def _jaxlib_version() -> str:
    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return ""


def prepare_process() -> None:
    """The first statement of every program, before its other imports: quiet C++ logs, the XLA
    flag, and where it applies a restart with huge pages (module docstring). Returns only if the
    process was not restarted."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if not _enabled():
        return
    apply_xla_flags()
    reexec_with_hugepages()


def configure(*, restart: bool = False) -> list[str]:
    """For notebooks and scripts: adds the XLA flag (module docstring) to ``XLA_FLAGS``; returns
    the flags it added. ``restart=True`` also re-executes the process once with huge pages, as
    the programs do; only before anything else has run."""
    if not _enabled():
        return []
    if "jax" in sys.modules:
        warnings.warn(
            "swinjax.runtime.configure(): jax is imported already; the XLA flag takes effect only "
            "if no JAX computation has run yet (call configure() before importing jax)",
            stacklevel=2,
        )
    added = apply_xla_flags()
    if restart:
        reexec_with_hugepages()
    return added


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
    if not _enabled(environ) or "GLIBC_TUNABLES" in environ:
        return None
    name, version = libc
    try:
        recent = tuple(int(v) for v in version.split(".")[:2]) >= (2, 35)
    except ValueError:
        recent = False
    if name != "glibc" or not recent or thp_mode not in ("always", "madvise"):
        return None
    return HUGEPAGE_TUNABLE


def debugger_attached() -> bool:
    """Whether a debugger, profiler or coverage tool watches this process: a restart would leave
    it behind, so there is none."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    return any(name in sys.modules for name in _DEBUGGER_MODULES)


def reexec_with_hugepages() -> None:
    """Restarts the process once with ``GLIBC_TUNABLES`` set for transparent huge pages, where
    that applies (module docstring); says so in one line on stderr."""
    if platform.system() != "Linux" or debugger_attached():
        return
    value = hugepage_tunables(dict(os.environ), platform.libc_ver(), _thp_mode())
    if value is None:
        return
    print(
        f"swinjax: restarting with GLIBC_TUNABLES={value} for huge pages "
        f"({TUNING_VARIABLE}=0: don't)",
        file=sys.stderr,
        flush=True,
    )
    os.environ["GLIBC_TUNABLES"] = value
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    os.execv(sys.executable, argv)
