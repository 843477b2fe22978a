"""The persistent XLA compilation cache (config key ``compilation_cache``), switched on only by
an explicit call: every program built on :func:`swinjax.cli.main` calls :func:`enable` once at
start, before its first compile; importing swinjax changes nothing.

``compilation_cache`` is ``"auto"`` (``$JAX_COMPILATION_CACHE_DIR`` where set, else
``$XDG_CACHE_HOME/swinjax/jax``, else ``~/.cache/swinjax/jax``), ``""`` or ``"none"`` (off), or a
folder. A second start of the same config loads its executables from the cache instead of
compiling them (docs/performance.md, "Time to first step"). JAX writes only computations that
took at least ``jax_persistent_cache_min_compile_time_secs`` (1 s by default; JAX reads
``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``) to compile. The cache is trusted code: never point
it at a folder others may write to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from swinjax.errors import ConfigError

AUTO = "auto"
OFF = ("", "none")
ENV_VARIABLE = "JAX_COMPILATION_CACHE_DIR"


def cache_dir(value: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The folder ``compilation_cache=value`` names (module docstring), or None for off.
    ConfigError where it names something that is not a folder."""
    value = str(value).strip()
    if value.lower() in OFF:
        return None
    if value == AUTO:
        if environ.get(ENV_VARIABLE):
            return environ[ENV_VARIABLE]
        base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "swinjax", "jax")
    path = os.path.expanduser(value)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(
            f"config.compilation_cache={value!r} is a file, not a folder; give a folder, "
            "'auto' or 'none'"
        )
    return path


def enable(value: str) -> str | None:
    """Points JAX's persistent compilation cache at ``cache_dir(value)`` (creating the folder),
    or switches it off; returns the folder or None. Call before the first compile."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    path = cache_dir(value)
    if path is not None:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"config.compilation_cache={value!r}: cannot create the folder {path} ({e}); "
                "give a writable folder or 'none'"
            ) from None
    if jax.config.jax_compilation_cache_dir != path or (
        jax.config.jax_enable_compilation_cache != (path is not None)
    ):
        jax.config.update("jax_enable_compilation_cache", path is not None)
        jax.config.update("jax_compilation_cache_dir", path)
        jax_cache.reset_cache()  # the next compile opens the new folder
    return path
