"""The one entry helper of every command-line program (``python -m swinjax.train`` / ``eval`` /
``sweep`` / ``bench`` / ``model``).

A program gives :func:`main` two functions: one defining its flags on a fresh
``absl.flags.FlagValues`` (never the process-wide ``FLAGS``, so programs can be called in-process
one after another, as the tests do), one doing the work and returning a JSON-able result. The
helper parses ``argv``, runs the work, prints the result as the last line of standard output,
and turns the errors a user can fix into a one-line message and an exit status:

- 0: done;
- 2: a bad command line, config, path, dataset or checkpoint (the message names it and the fix);
- 3: training diverged (NaN or infinite metrics; the message names the step).

Run as a program (``if __name__ == "__main__"``), :func:`run_program` first applies the process
speed settings (:func:`swinjax.runtime.configure`), then exits with that status.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags, logging
from ml_collections import config_flags

from swinjax import runtime
from swinjax.checkpoint import CheckpointError

USER_ERRORS = (ValueError, FileNotFoundError, CheckpointError)

Define = Callable[[flags.FlagValues], None]
Work = Callable[[flags.FlagValues], Any]


def config_flag(fv: flags.FlagValues, help_text: str = "experiment config file") -> None:
    """``--config FILE`` (a ``get_config()`` file) with ``--config.KEY=VALUE`` overrides."""
    config_flags.DEFINE_config_file("config", None, help_text, flag_values=fv, lock_config=True)


def main(argv: Sequence[str], define: Define, work: Work, *, required: Sequence[str] = ()) -> int:
    """Parses ``argv`` (``argv[0]`` is the program) into flags made by ``define``, runs
    ``work(flag_values)``, prints its result as JSON (nothing for None); returns the exit status.
    """
    fv = flags.FlagValues()
    define(fv)
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(f"usage: {argv[0]} [flags]\n\n{fv.get_help()}")
        return 0
    try:
        rest = fv(list(argv))
        missing = [f"--{name}" for name in required if fv[name].value is None]
        if len(rest) > 1 or missing:
            raise flags.Error(
                f"unexpected arguments {rest[1:]}" if len(rest) > 1 else f"{missing} required"
            )
    except flags.Error as e:
        print(f"error: {e}\nusage: {argv[0]} --help", file=sys.stderr)
        return 2
    logging.set_verbosity(logging.WARNING)  # orbax and tfds are chatty at INFO
    try:
        result = work(fv)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if result is not None:
        print(json.dumps(result, default=float), flush=True)
    return 0


def run_program(define: Define, work: Work, *, required: Sequence[str] = ()) -> None:
    """``main(sys.argv, ...)`` for ``if __name__ == "__main__"``, after the process settings."""
    runtime.configure(restart=True)
    sys.exit(main(sys.argv, define, work, required=required))
