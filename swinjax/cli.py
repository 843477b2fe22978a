"""The one entry helper of every command-line program (``python -m swinjax.train`` / ``eval`` /
``sweep`` / ``bench`` / ``presets``).

A program gives :func:`main` two functions: one defining its flags on a fresh
``absl.flags.FlagValues`` (never the process-wide ``FLAGS``, so programs can be called in-process
one after another, as the tests do), one doing the work and returning a JSON-able result. The
helper parses ``argv``, runs the work, prints the result as the last line of standard output,
and returns the exit status:

- 0: done (or ``--help`` / ``--list_keys`` printed);
- 2: something the user can fix: a bad flag, ``--config`` file or ``--config.KEY=VALUE``, and
  every :class:`swinjax.errors.UserError` (a bad config value, path, dataset or checkpoint). One
  line on stderr, ``error: <message>``, names the problem and the fix;
- 3: training diverged (:class:`swinjax.errors.TrainingDivergedError`; the line names the step);
- 4: some inputs could not be read, the output for the others is written
  (:class:`swinjax.errors.SomeInputsFailedError`; ``python -m swinjax.predict``).

Every other exception (a bug in swinjax or in a config file, an error inside JAX or TensorFlow)
is not caught: it ends the process with its traceback and status 1.

Each program's first statement is ``runtime.prepare_process()`` (quiet logs, speed settings;
:mod:`swinjax.runtime`), before its imports; :func:`run_program` only exits with the status.
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags, logging
from ml_collections import config_flags

from swinjax.errors import (
    ConfigError,
    MissingFileError,
    SomeInputsFailedError,
    TrainingDivergedError,
    UserError,
)

Define = Callable[[flags.FlagValues], None]
Work = Callable[[flags.FlagValues], Any]

# The module of ml_collections that resolves a --config.KEY override against the loaded config:
# an unknown key raises AttributeError or KeyError there.
_OVERRIDE_RESOLVER = "ml_collections.config_flags.config_path"
# The module name under which ml_collections loads the --config file.
_CONFIG_MODULE = "config_config"
# The module of ml_collections that calls a config file's get_config().
_CONFIG_LOADER = "ml_collections.config_flags.config_flags"
_CONFIG_HELP = (
    "Any config key is set as --config.KEY=VALUE after --config FILE (e.g. --config.num_epochs=5 "
    "--config.model_kwargs.window_size=8); --list_keys lists the keys with their defaults. "
    '--config FILE:VARIANT calls the file\'s get_config("VARIANT").'
)
_HELP_FLAGS = ("-h", "--help", "-help", "--helpfull")


def main(
    argv: Sequence[str],
    define: Define,
    work: Work,
    *,
    program: str,
    description: str = "",
    required: Sequence[str] = (),
    config: str | None = None,
    positional: str | None = None,
) -> int:
    """Parses ``argv`` (``argv[0]`` is the program) into flags made by ``define``, runs
    ``work(flag_values)``, prints its result as JSON (nothing for None); returns the exit status.

    ``program``: the module run as ``python -m PROGRAM`` (the usage line). ``description``: the
    program's docstring; its first paragraph heads ``--help``. ``required``: flags without which
    the program cannot run. ``config``: the help text of a ``--config FILE`` flag (a
    ``get_config()`` file, overridden as ``--config.KEY=VALUE``) the program takes, which also
    brings ``--list_keys``; None: it takes neither. ``positional``: the name of a multi-string
    flag that the arguments after the flags are added to (``python -m swinjax.predict --ckpt W
    a.jpg photos/``); None: such arguments are an error.
    """
    argv = list(argv)
    fv = flags.FlagValues()
    if config is not None:  # overrides are read from argv itself, not from sys.argv
        config_flags.DEFINE_config_file(
            "config", None, config, flag_values=fv, lock_config=True, sys_argv=argv
        )
        flags.DEFINE_bool(
            "list_keys", False, "print every config key with its default, and exit", flag_values=fv
        )
    define(fv)
    if any(a in _HELP_FLAGS for a in argv[1:]):
        print(help_text(fv, program, description, required, takes_config=config is not None))
        return 0
    try:
        _parse(fv, argv, program, required, takes_config=config is not None, positional=positional)
    except UserError as e:  # the command line's, or one the config file's get_config raised
        return _fail(e, 2)
    if config is not None and fv.list_keys:
        from swinjax.config import describe_keys

        print(describe_keys())
        return 0
    logging.set_verbosity(logging.WARNING)  # orbax and tfds are chatty at INFO
    try:
        _enable_compilation_cache(fv, takes_config=config is not None)
        result = work(fv)
    except UserError as e:
        return _fail(e, 2)
    except TrainingDivergedError as e:
        return _fail(e, 3)
    except SomeInputsFailedError as e:  # the output for the other inputs is written
        return _fail(e, 4)
    if result is not None:
        print(json.dumps(result, default=float), flush=True)
    return 0


def _enable_compilation_cache(fv: flags.FlagValues, *, takes_config: bool) -> None:
    """The persistent compilation cache of the config's ``compilation_cache`` (``auto`` for a
    program without ``--config``), before the program's first compile."""
    from swinjax.config import compilation_cache

    value = fv.config.get("compilation_cache", compilation_cache.AUTO) if takes_config else None
    compilation_cache.enable(compilation_cache.AUTO if value is None else value)


def _fail(error: Exception, status: int) -> int:
    print(f"error: {error}", file=sys.stderr, flush=True)
    return status


def _parse(
    fv: flags.FlagValues,
    argv: list[str],
    program: str,
    required: Sequence[str],
    *,
    takes_config: bool,
    positional: str | None = None,
) -> None:
    """Parses ``argv`` into ``fv``. Raises a :class:`UserError` for what the command line got
    wrong (or a :class:`UserError` the config file raised); anything else raised while the config
    file loads (a bug in it) propagates with its traceback."""
    see_help = f"(python -m {program} --help)"
    if takes_config:
        _check_config_file(argv)
        # ml_collections loads the file into this module, executing it over an earlier one's
        # namespace: a file without get_config() would run the previous file's.
        sys.modules.pop(_CONFIG_MODULE, None)
    try:
        rest = fv(argv)
    except (AttributeError, KeyError) as e:
        user_error = _override_or_file_error(e, argv, program)
        if user_error is None:
            raise
        raise user_error from e
    except flags.IllegalFlagValueError as e:
        user_error = _config_value_error(e, argv, see_help)
        if user_error is None:
            raise
        raise user_error from e
    except flags.Error as e:  # an unknown flag, a missing value, an override before --config
        raise ConfigError(f"{e} {see_help}") from e
    if takes_config:
        _check_loaded_config(fv)
    if positional is not None and len(rest) > 1:
        fv[positional].value = [*(fv[positional].value or []), *rest[1:]]
    elif len(rest) > 1:
        raise ConfigError(f"unexpected arguments {rest[1:]} {see_help}")
    missing = [f"--{name}" for name in required if fv[name].value is None]
    if missing and not (takes_config and fv.list_keys):
        raise ConfigError(f"{' and '.join(missing)} required {see_help}")


def _config_spec(argv: Sequence[str]) -> str | None:
    """The value of ``--config FILE[:VARIANT]`` or ``--config=FILE[:VARIANT]`` in ``argv``."""
    for i, arg in enumerate(argv[1:], start=1):
        if re.fullmatch(r"--?config", arg):
            return argv[i + 1] if i + 1 < len(argv) else None
        if re.match(r"--?config=", arg):
            return arg.split("=", 1)[1]
    return None


def _check_config_file(argv: Sequence[str]) -> None:
    """A ``--config`` file that does not exist: ml_collections would defer the error to the first
    use of the config, deep inside the program."""
    spec = _config_spec(argv)
    if spec is not None and not os.path.isfile(spec.split(":", 1)[0]):
        raise MissingFileError(f"--config {spec.split(':', 1)[0]}: no such file")


def _check_loaded_config(fv: flags.FlagValues) -> None:
    """Raises now an OSError that the config file's ``get_config`` raised, which ml_collections
    keeps until the config is first used: the :class:`UserError` under it as that, any other
    with its traceback."""
    try:
        getattr(fv["config"].value, "keys", None)  # the kept error's stand-in raises it
    except OSError as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from e
        raise


def _override_or_file_error(
    error: Exception, argv: Sequence[str], program: str
) -> UserError | None:
    """The :class:`UserError` for an AttributeError/KeyError raised while parsing: a config file
    without ``get_config``, or a ``--config.KEY`` naming no key (with ml_collections' nearest
    key); None for anything else (raised by the config file's own code)."""
    if isinstance(error, AttributeError) and error.name == "get_config":
        return ConfigError(f"--config {_config_spec(argv)}: the file has no get_config()")
    if not _raised_in(error, _OVERRIDE_RESOLVER):
        return None
    message = _unknown_key_message(error, argv, program)
    return None if message is None else ConfigError(message)


def _unknown_key_message(error: Exception, argv: Sequence[str], program: str) -> str | None:
    """``--config.a.b: no such config key; did you mean --config.a.c?``, for the override whose
    path holds the missing key; None if none does."""
    text = error.args[0] if error.args else ""
    if isinstance(text, KeyError):  # ConfigDict's AttributeError carries its KeyError
        text = text.args[0] if text.args else ""
    text = str(text)
    missing = re.match(r"'([^']+)'", text)
    if missing is None:
        return None
    overrides = [
        a.split("=", 1)[0].split(".")[1:] for a in argv[1:] if re.match(r"--?(no)?config\.", a)
    ]
    path = next((p for p in overrides if missing[1] in p), None)
    if path is None:
        return None
    at = path.index(missing[1])
    close = re.search(r'Did you mean "([^"]+)"', text)
    hint = f"; did you mean --config.{'.'.join([*path[:at], close[1]])}?" if close else ""
    return (
        f"--config.{'.'.join(path)}: no such config key{hint} "
        f"(python -m {program} --list_keys lists them)"
    )


def _raised_in(error: BaseException, module: str) -> bool:
    """Whether ``module``'s code is on the traceback of ``error``."""
    return module in _traceback_modules(error)


def _traceback_modules(error: BaseException) -> list[str]:
    """The modules of the frames on the traceback of ``error``, outermost first."""
    modules, tb = [], error.__traceback__
    while tb is not None:
        modules.append(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    return modules


def _config_value_error(
    error: flags.IllegalFlagValueError, argv: Sequence[str], see_help: str
) -> UserError | None:
    """The :class:`UserError` for an unparsable flag value: a ``--config.KEY`` value of the wrong
    type, a :class:`UserError` of ``get_config``, or a VARIANT that ``get_config`` does not take;
    None for a bug in the config file (a TypeError or ValueError raised by its own code)."""
    wrapper = error.__context__  # ml_collections re-raises get_config's error with its traceback
    if wrapper is None or not str(wrapper).startswith("Error whilst parsing config file"):
        return ConfigError(f"{error} {see_help}")
    raised = wrapper.__context__
    if isinstance(raised, UserError):
        return ConfigError(f"--config {_config_spec(argv)}: {raised}")
    if isinstance(raised, TypeError) and _traceback_modules(raised)[-1:] == [_CONFIG_LOADER]:
        return ConfigError(f"--config {_config_spec(argv)}: {raised}")  # get_config's arguments
    return None


def define_tta_flags(fv: flags.FlagValues) -> None:
    """``--tta`` and ``--tta_shift``, as eval and predict take them (read with
    :func:`tta_shift`)."""
    flags.DEFINE_bool(
        "tta", False, "flip test-time augmentation: average image and mirror", flag_values=fv
    )
    flags.DEFINE_integer(
        "tta_shift",
        -1,
        "with --tta, also views moved by +-this many pixels; -1: the run's eval_tta_shift",
        flag_values=fv,
    )


def tta_shift(fv: flags.FlagValues) -> int | None:
    """``--tta_shift``: None (the run's ``eval_tta_shift``) for -1, else the pixels given."""
    return None if fv.tta_shift < 0 else fv.tta_shift


def help_text(
    fv: flags.FlagValues,
    program: str,
    description: str = "",
    required: Sequence[str] = (),
    *,
    takes_config: bool,
) -> str:
    """``--help``: the usage line, the program's first docstring paragraph, how config keys are
    set, and every flag with its default or "required"."""
    lines = [f"usage: python -m {program} [flags]", ""]
    if description.strip():
        summary = description.strip().split("\n\n")[0]
        lines += [re.sub(r":\w+:`([^`]+)`", r"\1", summary).replace("``", ""), ""]
    if takes_config:
        lines += [textwrap.fill(_CONFIG_HELP, width=100), ""]
    modules = fv.flags_by_module_dict()
    own = [m for m in sorted(modules, key=lambda m: m != __name__) if m != "absl.flags"]
    flag_lines = []
    for flag in (f for module in own for f in modules[module]):  # --config, --list_keys first
        name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
        if flag.name in required:
            name += " (required)"
        default = "" if flag.default is None else f" (default: {flag.default_as_str})"
        flag_lines.append(f"{name}: {flag.help}{default}")
    if flag_lines:
        lines.append("flags:")
        lines += [
            textwrap.fill(t, 100, initial_indent="  ", subsequent_indent="      ")
            for t in flag_lines
        ]
    return "\n".join(lines)


def run_program(program_main: Callable[[list[str]], int]) -> None:
    """``sys.exit(program_main(sys.argv))``, for a program's ``if __name__ == "__main__"``."""
    sys.exit(program_main(sys.argv))
