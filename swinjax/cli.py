"""The one entry helper of every command-line program (``python -m swinjax.train`` / ``eval`` /
``sweep`` / ``bench`` / ``presets``).

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
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags, logging
from ml_collections import config_flags

from swinjax import runtime
from swinjax.errors import (
    CheckpointError,
    DownloadError,
    MissingDependencyError,
    TrainingDivergedError,
)

# What a user can fix (the message says how): exit status 2.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    CheckpointError,
    DownloadError,
    MissingDependencyError,
)

Define = Callable[[flags.FlagValues], None]
Work = Callable[[flags.FlagValues], Any]


def main(
    argv: Sequence[str],
    define: Define,
    work: Work,
    *,
    required: Sequence[str] = (),
    config: str | None = None,
) -> int:
    """Parses ``argv`` (``argv[0]`` is the program) into flags made by ``define``, runs
    ``work(flag_values)``, prints its result as JSON (nothing for None); returns the exit status.

    ``config``: the help text of a ``--config FILE`` flag (a ``get_config()`` file, overridden
    as ``--config.KEY=VALUE``) the program takes; None: it takes none.
    """
    argv = list(argv)
    fv = flags.FlagValues()
    if config is not None:  # overrides are read from argv itself, not from sys.argv
        config_flags.DEFINE_config_file(
            "config", None, config, flag_values=fv, lock_config=True, sys_argv=argv
        )
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
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # a --config.KEY override
        print(f"error: {_override_error(argv, e)}", file=sys.stderr)
        return 2
    logging.set_verbosity(logging.WARNING)  # orbax and tfds are chatty at INFO
    try:
        result = work(fv)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if result is not None:
        print(json.dumps(result, default=float), flush=True)
    return 0


def _override_error(argv: Sequence[str], error: Exception) -> str:
    """A one-line message for a bad ``--config.KEY=VALUE``: the argument, and for an unknown key
    the nearest existing one (ml_collections' suggestion)."""
    text = str(error.args[0] if error.args else error).replace("\\n", " ").replace("\n", " ")
    names = [a[2:].split("=")[0] for a in argv[1:] if a.startswith("--config.")]
    culprit = next((n for n in names if f"'{n.rsplit('.', 1)[-1]}" in text), None)
    if isinstance(error, AttributeError | KeyError) and culprit:
        close = re.search(r'Did you mean "([^"]+)"', text)
        hint = f"; did you mean --{culprit.rsplit('.', 1)[0]}.{close[1]}?" if close else ""
        return f"--{culprit}: no such config key{hint} (the keys: swinjax/config.py)"
    return f"{' '.join('--' + n for n in names) or 'the command line'}: {text}"


def run_program(program_main: Callable[[list[str]], int]) -> None:
    """``sys.exit(program_main(sys.argv))`` for ``if __name__ == "__main__"``, after the process
    settings (:func:`swinjax.runtime.configure`)."""
    runtime.configure(restart=True)
    sys.exit(program_main(sys.argv))
