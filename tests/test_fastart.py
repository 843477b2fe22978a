"""Fast start: the persistent compilation cache the programs switch on (config key
``compilation_cache``), and the start-up figures of ``bench --json``."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import bench
from swinjax.config import compilation_cache, validate_config
from swinjax.errors import ConfigError
from swinjax.training.setup import setup_run
from tests.conftest import make_tiny_config

BENCH_ARGS = ["--config", "experiments/demo.py", "--batch_size=32", "--steps=1", "--warmup=1"]
BENCH_ARGS += ["--epoch_steps=1", "--json"]


@pytest.fixture
def restore_cache():
    """The session's cache (conftest: $JAX_COMPILATION_CACHE_DIR) back after the test."""
    yield
    compilation_cache.enable(compilation_cache.AUTO)


def test_cache_dir_resolves_auto_off_and_folders(tmp_path) -> None:
    env = {"JAX_COMPILATION_CACHE_DIR": "/env/cache", "XDG_CACHE_HOME": "/xdg"}
    assert compilation_cache.cache_dir("auto", env) == "/env/cache"
    assert compilation_cache.cache_dir("auto", {"XDG_CACHE_HOME": "/xdg"}) == "/xdg/swinjax/jax"
    home = compilation_cache.cache_dir("auto", {})
    assert home == os.path.join(os.path.expanduser("~"), ".cache", "swinjax", "jax")
    for off in ("", "none", "None"):
        assert compilation_cache.cache_dir(off, env) is None
    assert compilation_cache.cache_dir(str(tmp_path / "new"), env) == str(tmp_path / "new")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="compilation_cache.*is a file"):
        compilation_cache.cache_dir(str(a_file))
    with pytest.raises(ConfigError, match="compilation_cache"):
        validate_config(make_tiny_config(compilation_cache=str(a_file)))


def test_bench_fills_the_cache_and_reports_start_figures(tmp_path, capsys, restore_cache) -> None:
    cache = tmp_path / "cache"
    assert bench.main(["bench", *BENCH_ARGS, f"--config.compilation_cache={cache}"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert jax.config.jax_compilation_cache_dir == str(cache)
    assert list(cache.iterdir())  # the compiled steps (conftest: no minimum compile time)
    assert result["first_step_s"] > result["compile_s"] > 0  # set-up + compile + one step
    assert result["train_step_temp_bytes"] > 0
    # One device: the whole train state, its parameters and AdamW moments most of it.
    state = setup_run(make_tiny_config(), splits={"train": "train[:10%]"}).take_state()
    params_and_moments = _nbytes(state.params) + _nbytes(state.opt_state)
    assert result["train_state_bytes_per_device"] == _nbytes(state)
    assert params_and_moments <= _nbytes(state) < params_and_moments + 4 * 2**10


def _nbytes(tree) -> int:
    """Bytes of every array of ``tree`` (a typed PRNG key: its uint32 data)."""
    keys = jax.dtypes.prng_key
    return sum(
        (jax.random.key_data(x) if jnp.issubdtype(x.dtype, keys) else np.asarray(x)).nbytes
        for x in jax.tree.leaves(tree)
    )


def test_none_disables_the_cache(tmp_path, restore_cache) -> None:
    cache = tmp_path / "cache"
    assert compilation_cache.enable(str(cache)) == str(cache)
    jax.jit(lambda x: x * 3.0 + 1.0).lower(jnp.ones(5)).compile()
    written = set(cache.iterdir())
    assert written
    assert compilation_cache.enable("none") is None
    assert not jax.config.jax_enable_compilation_cache
    jax.jit(lambda x: x * 5.0 - 2.0).lower(jnp.ones(7)).compile()
    assert set(cache.iterdir()) == written


def test_a_file_as_cache_fails_before_compiling(tmp_path, capsys, restore_cache) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert bench.main(["bench", *BENCH_ARGS, f"--config.compilation_cache={a_file}"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert jax.config.jax_compilation_cache_dir != str(a_file)
