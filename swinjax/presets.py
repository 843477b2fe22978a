"""The model presets: ``python -m swinjax.presets`` prints the table of every preset of
:data:`swinjax.models.PRESETS` that ``python -m swinjax.model --list`` prints (one implementation:
:func:`swinjax.models.presets.list_presets`).
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX or TensorFlow is imported: see swinjax.runtime
    from swinjax import runtime

    runtime.prepare_process()

from typing import Any

from absl import flags

from swinjax import cli
from swinjax.models.presets import list_presets


def define_flags(fv: flags.FlagValues) -> None:
    del fv  # no flags of its own


def main(argv: list[str]) -> int:
    """``python -m swinjax.presets``; returns the exit status."""
    return cli.main(argv, define_flags, _work, program="swinjax.presets", description=__doc__)


def _work(fv: Any) -> None:
    print(list_presets())


if __name__ == "__main__":
    cli.run_program(main)
