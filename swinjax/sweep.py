"""Hyperparameter sweeps: ``python -m swinjax.sweep --config experiments/SWEEP.py --workdir DIR``.

The config file is a training config plus a ``sweep`` section (:mod:`swinjax.sweeps.space`);
:mod:`swinjax.sweeps.runner` says how points train and what ``DIR/results.jsonl`` holds.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX or TensorFlow is imported: see swinjax.runtime
    from swinjax import runtime

    runtime.prepare_process()

from typing import Any

from absl import flags

from swinjax import cli
from swinjax.sweeps.runner import run_sweep


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "workdir", None, "directory for results.jsonl and sweep.png", flag_values=fv
    )


def main(argv: list[str]) -> int:
    """``python -m swinjax.sweep`` with ``argv``; returns the exit status (see swinjax.cli)."""
    return cli.main(
        argv,
        define_flags,
        _work,
        program="swinjax.sweep",
        description=__doc__,
        required=("config", "workdir"),
        config="sweep config file: a training config with a `sweep` section",
    )


def _work(fv: flags.FlagValues) -> dict[str, Any]:
    best = run_sweep(fv.config, fv.workdir)[0]
    return {k: best[k] for k in ("point", "best_val_top1", "best_val_top5")}


if __name__ == "__main__":
    cli.run_program(main)
