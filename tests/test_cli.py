"""The programs' entry (swinjax.cli) and start (swinjax.runtime.prepare_process).

What a user can fix exits 2 with one line on stderr; a diverged run exits 3; every other error
(a bug in swinjax or in a config file, an error inside JAX) keeps its traceback. ``--help`` names
the module and how config keys are set; ``--list_keys`` prints them. A program's first statement
quiets the C++ logs, adds the XLA flag and restarts once with huge pages where that applies.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import tomllib

import pytest
from absl import flags

from swinjax import cli, runtime
from swinjax.errors import ConfigError, TrainingDivergedError
from tests.conftest import REPO

# The environment of a program as a user starts it: none of the variables the start sets.
STARTED = ("GLIBC_TUNABLES", "XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL", runtime.TUNING_VARIABLE)
USER_ENV = {k: v for k, v in os.environ.items() if k not in STARTED}
# Without the restart, and with conftest's XLA_FLAGS (compiling faster), not its log level.
UNTUNED_ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "TF_CPP_MIN_LOG_LEVEL")},
    runtime.TUNING_VARIABLE: "0",
}

# The train program's real entry (what `if __name__ == "__main__"` calls), with train_step
# replaced by one that fails as a bug inside JAX would.
BROKEN_STEP = """
import sys
from swinjax import cli, train
from swinjax.training import steps

def broken_step(*args, **kwargs):
    raise ValueError("boom")

steps.train_step = broken_step
sys.argv = ["swinjax.train", *sys.argv[1:]]
cli.run_program(train.main)
"""


def _run_together(commands: list[list[str]], env: dict[str, str]) -> list[tuple[int, str, str]]:
    """Runs the commands at the same time (each start imports JAX); (status, stdout, stderr)."""
    procs = [
        subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in commands
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        results.append((proc.returncode, out.decode(), err.decode()))
    return results


def test_only_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path) -> None:
    train = [sys.executable, "-m", "swinjax.train", "--config", "experiments/demo.py"]
    demo = [
        "--config",
        "experiments/demo.py",
        "--config.max_steps=1",
        "--config.progress_bar=False",
    ]
    runs = _run_together(
        [
            [sys.executable, "-c", BROKEN_STEP, "--workdir", str(tmp_path / "bug"), *demo],
            [*train, "--workdir", str(tmp_path / "a"), "--config.learning_rate=-1"],
            [*train, "--workdir", str(tmp_path / "b"), "--config.lerning_rate=1"],
            [*train, "--workdir", str(tmp_path / "c"), "--config.batch_size=abc"],
        ],
        UNTUNED_ENV,
    )
    status, _, err = runs[0]  # an internal ValueError inside a step
    assert status not in (0, 2), err[-3000:]
    assert "Traceback (most recent call last)" in err and "ValueError: boom" in err
    assert "error: boom" not in err
    for (status, _, err), line in zip(
        runs[1:],
        [
            "error: config.learning_rate=-1",
            "error: --config.lerning_rate: no such config key; did you mean "
            "--config.learning_rate? (python -m swinjax.train --list_keys lists them)",
            "error: flag --config.batch_size=abc: invalid literal for int()",
        ],
        strict=True,
    ):
        assert status == 2, err[-3000:]
        assert len(err.splitlines()) == 1 and err.startswith(line), err[-3000:]
    assert not any((tmp_path / d).exists() for d in "abc")  # nothing written


def _toy_program(tmp_path, body: str, *args: str, variant: str = "") -> int:
    """``cli.main`` of a program taking ``--config`` (a file of ``body``, with ``:variant``)
    whose work returns the config's learning rate."""
    path = tmp_path / "toy_config.py"
    path.write_text(textwrap.dedent(body))
    argv = ["/anywhere/toy.py", f"--config={path}{variant}", *args]

    def work(fv: flags.FlagValues) -> dict:
        return {"learning_rate": fv.config.learning_rate}

    return cli.main(argv, lambda fv: None, work, program="swinjax.toy", config="a config file")


GOOD = """
import ml_collections
def get_config(variant=""):
    config = ml_collections.ConfigDict({"learning_rate": 1.0, "model_kwargs": {"depth": 2}})
    if variant not in ("", "fast"):
        from swinjax.errors import ConfigError
        raise ConfigError(f"no variant {variant!r}; the variants: fast")
    return config
"""


@pytest.mark.parametrize(
    ("body", "variant", "args", "line"),
    [
        (GOOD, ":fast", ["--config.learning_rate=0.5"], None),
        (GOOD, "", ["--config.lerning_rate=1"], "--config.lerning_rate: no such config key; "),
        (GOOD, "", ["--config.model_kwargs.dept=1"], "did you mean --config.model_kwargs.depth?"),
        (GOOD, "", ["--config.learning_rate=fast"], "flag --config.learning_rate=fast: could not"),
        (GOOD, "", ["--config.learning_rate"], "Missing value for flag --config.learning_rate"),
        (GOOD, "", ["--lerning_rate=1"], "Unknown command line flag 'lerning_rate'"),
        (GOOD, "", ["extra"], "unexpected arguments ['extra']"),
        (GOOD, ":slow", [], "no variant 'slow'; the variants: fast"),
        ("X = 1\n", "", [], "the file has no get_config()"),
        ("def get_config():\n    return 1\n", ":fast", [], "get_config() takes 0 positional"),
    ],
)
def test_command_line_mistakes_are_one_line(tmp_path, capsys, body, variant, args, line) -> None:
    status = _toy_program(tmp_path, body, *args, variant=variant)
    out, err = capsys.readouterr()
    if line is None:
        assert status == 0 and json.loads(out) == {"learning_rate": 0.5}
        return
    assert status == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and line in err


def test_a_missing_config_file_is_named_before_anything_runs(tmp_path, capsys) -> None:
    argv = ["toy", f"--config={tmp_path / 'nope.py'}", "--config.learning_rate=1"]
    assert cli.main(argv, lambda fv: None, pytest.fail, program="x", config="c") == 2
    assert capsys.readouterr().err == f"error: --config {tmp_path / 'nope.py'}: no such file\n"


@pytest.mark.parametrize(
    ("body", "raised"),
    [
        ("def get_config():\n    return undefined_name\n", NameError),
        ("def get_config():\n    return {}['key']\n", KeyError),
        ("def get_config():\n    raise ValueError('a bug in the file')\n", flags.Error),
    ],
)
def test_a_bug_in_the_config_file_keeps_its_traceback(tmp_path, body, raised) -> None:
    with pytest.raises(raised) as info:
        _toy_program(tmp_path, body)
    if raised is flags.Error:  # ml_collections and absl re-raise it, the traceback inside
        assert "a bug in the file" in str(info.value) and "Traceback" in str(info.value)


def test_exit_statuses_of_the_work(capsys) -> None:
    def run(error: Exception) -> int:
        def work(fv: flags.FlagValues) -> None:
            raise error

        return cli.main(["toy"], lambda fv: None, work, program="x")

    assert run(ConfigError("config.x=1: must be 2")) == 2
    assert capsys.readouterr().err == "error: config.x=1: must be 2\n"
    assert run(TrainingDivergedError("loss is nan at step 3")) == 3
    assert capsys.readouterr().err == "error: loss is nan at step 3\n"
    for internal in (ValueError("shapes"), FileNotFoundError("x"), KeyError("k")):
        with pytest.raises(type(internal)):
            run(internal)


def test_help_names_the_module_and_how_to_set_config_keys(capsys) -> None:
    from swinjax import eval as eval_program
    from swinjax import presets, train

    assert train.main([str(REPO / "swinjax" / "train.py"), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m swinjax.train [flags]\n")
    assert "--config.KEY=VALUE" in out and "--list_keys lists the keys" in out
    assert "--workdir (required): directory for checkpoints" in out
    assert "flagfile" not in out
    assert presets.main(["presets.py", "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m swinjax.presets [flags]\n")
    assert "--config" not in out and "flags:" not in out
    assert eval_program.main(["eval.py", "--help"]) == 0
    assert "--ckpt (required)" in capsys.readouterr().out


def test_list_keys_needs_neither_config_nor_workdir(capsys) -> None:
    from swinjax import eval as eval_program
    from swinjax import sweep, train
    from swinjax.config import describe_keys

    for program in (train, sweep):
        assert program.main(["x", "--list_keys"]) == 0
        assert capsys.readouterr().out == describe_keys() + "\n"
    assert eval_program.main(["x", "--list_keys"]) == 2  # eval takes no --config
    assert "Unknown command line flag 'list_keys'" in capsys.readouterr().err


# What a program's first statement leaves in the environment; run in a fresh interpreter.
PREPARED = (
    "import json, os, sys\n"
    "if len(sys.argv) > 1: sys.settrace(lambda *args: None)  # as a debugger does\n"
    "from swinjax import runtime\n"
    "runtime.prepare_process()\n"
    "print(json.dumps({k: os.environ.get(k) for k in "
    "('GLIBC_TUNABLES', 'XLA_FLAGS', 'TF_CPP_MIN_LOG_LEVEL')}))\n"
)


def _prepared(env: dict[str, str], *args: str) -> tuple[dict, str]:
    out = subprocess.run(
        [sys.executable, "-c", PREPARED, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stderr


def test_prepare_process_restarts_once_where_huge_pages_apply() -> None:
    expected = runtime.hugepage_tunables(USER_ENV, platform.libc_ver(), runtime._thp_mode())
    if platform.system() != "Linux":
        expected = None
    found, err = _prepared(USER_ENV)
    assert found["GLIBC_TUNABLES"] == expected
    assert err == (
        f"swinjax: restarting with GLIBC_TUNABLES={expected} for huge pages "
        "(SWINJAX_RUNTIME_TUNING=0: don't)\n"
        if expected
        else ""
    )
    assert found["TF_CPP_MIN_LOG_LEVEL"] == "2"
    tested = runtime._jaxlib_version().startswith(runtime.TESTED_JAXLIB)
    assert found["XLA_FLAGS"] == (
        "--xla_cpu_experimental_ynn_fusion_type=-reduce" if tested else None
    )


def test_prepare_process_leaves_debuggers_and_users_settings_alone() -> None:
    found, err = _prepared(USER_ENV, "traced")  # a debugger or profiler would lose the process
    assert found["GLIBC_TUNABLES"] is None and err == ""
    found, err = _prepared({**USER_ENV, runtime.TUNING_VARIABLE: "0", "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert found == {"GLIBC_TUNABLES": None, "XLA_FLAGS": None, "TF_CPP_MIN_LOG_LEVEL": "0"}
    assert err == ""
    found, err = _prepared({**USER_ENV, "GLIBC_TUNABLES": "glibc.malloc.check=0"})
    assert found["GLIBC_TUNABLES"] == "glibc.malloc.check=0" and err == ""


def test_configure_after_jax_is_imported_warns(monkeypatch) -> None:
    import jax  # noqa: F401 - the test process has computed with JAX already

    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.delenv(runtime.TUNING_VARIABLE, raising=False)
    with pytest.warns(UserWarning, match="jax is imported already"):
        runtime.configure(restart=False)


def test_script_commands_run_their_program() -> None:
    """Each ``[project.scripts]`` command names a function of swinjax.scripts; one runs as
    ``python -m swinjax.presets`` does, start included: nothing on stderr but the restart line."""
    from swinjax import scripts

    commands = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(commands) == {
        f"swinjax-{n}" for n in ("train", "eval", "sweep", "bench", "presets", "predict", "export")
    }
    for target in commands.values():
        module, name = target.split(":")
        assert module == "swinjax.scripts" and callable(getattr(scripts, name))
    code = "import sys; from swinjax import scripts; sys.argv[0] = 'swinjax-x'; scripts.presets()"
    out = subprocess.run(
        [sys.executable, "-c", code, "--help"],
        cwd=REPO,
        env=USER_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m swinjax.presets [flags]")
    assert all(line.startswith("swinjax: restarting with") for line in out.stderr.splitlines())
    assert len(out.stderr.splitlines()) <= 1
