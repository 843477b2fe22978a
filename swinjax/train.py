"""Training: ``python -m swinjax.train --config experiments/NAME.py --workdir DIR``.

Override any config key on the command line: ``--config.num_epochs=5 --config.data_dir=DIR``.
Re-running the same command on the same workdir resumes from its latest checkpoint
(:mod:`swinjax.training.trainer` says what a run does).
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX or TensorFlow is imported: see swinjax.runtime
    from swinjax import runtime

    runtime.prepare_process()

from typing import Any

from absl import flags

from swinjax import cli
from swinjax.training.trainer import train_and_evaluate


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "workdir", None, "directory for checkpoints, logs and plots", flag_values=fv
    )


def main(argv: list[str]) -> int:
    """``python -m swinjax.train`` with ``argv``; returns the exit status (see swinjax.cli)."""
    return cli.main(
        argv,
        define_flags,
        _work,
        program="swinjax.train",
        description=__doc__,
        required=("config", "workdir"),
        config="experiment config file",
    )


def _work(fv: flags.FlagValues) -> dict[str, Any]:
    return train_and_evaluate(fv.config, fv.workdir)


if __name__ == "__main__":
    cli.run_program(main)
