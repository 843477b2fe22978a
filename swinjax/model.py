"""The model presets and their counts: ``python -m swinjax.model --list`` prints every preset of
:data:`swinjax.models.PRESETS` (Swin V1 and V2) with its version, image size, window, classes,
parameters and forward GFLOPs per image, counted two ways: by PyTorch's rule (matrix products and
convolutions, what timm's figures count) and by XLA's cost analysis (every op).
``--preset NAME`` (repeatable) prints those rows only. ``python -m swinjax.presets`` prints the
same table.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX or TensorFlow is imported: see swinjax.runtime
    from swinjax import runtime

    runtime.prepare_process()

from typing import Any

from absl import flags

from swinjax import cli
from swinjax.errors import ConfigError
from swinjax.models.presets import list_presets


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool("list", False, "print the table of presets", flag_values=fv)
    flags.DEFINE_multi_string("preset", [], "with --list: only these presets", flag_values=fv)


def main(argv: list[str]) -> int:
    """``python -m swinjax.model``; returns the exit status."""
    return cli.main(argv, define_flags, _work, program="swinjax.model", description=__doc__)


def _work(fv: Any) -> None:
    if not fv.list:
        raise ConfigError("nothing to do: pass --list (and --preset NAME for some presets only)")
    print(list_presets(fv.preset))


if __name__ == "__main__":
    cli.run_program(main)
