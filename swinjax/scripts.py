"""The ``[project.scripts]`` commands (``swinjax-train``, ``swinjax-eval``, ``swinjax-sweep``,
``swinjax-bench``, ``swinjax-presets``, ``swinjax-predict``, ``swinjax-export``): each runs its
program exactly as ``python -m swinjax.X`` does, its first statement
(:func:`swinjax.runtime.prepare_process`) included, before any of the program's imports. This
module imports only the standard library and :mod:`swinjax.runtime`; the program is found by
name when the command runs.
"""

from __future__ import annotations

import runpy

from swinjax import runtime


def _run(module: str) -> None:
    runtime.prepare_process()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def train() -> None:
    """``swinjax-train``: ``python -m swinjax.train``."""
    _run("swinjax.train")


def evaluate() -> None:
    """``swinjax-eval``: ``python -m swinjax.eval``."""
    _run("swinjax.eval")


def sweep() -> None:
    """``swinjax-sweep``: ``python -m swinjax.sweep``."""
    _run("swinjax.sweep")


def bench() -> None:
    """``swinjax-bench``: ``python -m swinjax.bench``."""
    _run("swinjax.bench")


def presets() -> None:
    """``swinjax-presets``: ``python -m swinjax.presets``."""
    _run("swinjax.presets")


def predict() -> None:
    """``swinjax-predict``: ``python -m swinjax.predict``."""
    _run("swinjax.predict")


def export() -> None:
    """``swinjax-export``: ``python -m swinjax.export``."""
    _run("swinjax.export")
