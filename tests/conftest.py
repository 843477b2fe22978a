"""Shared fixtures: tiny configs that train in seconds on the CPU, and real tfds directories built
offline in a temporary folder (``tiny_tfds_dir``, ``tfds_dir_factory``; see tests/tfds_fixture.py).

Only tests marked ``requires_shared_tfds`` read the shared real datasets beside the clone
(``<clone>/../shared/datasets/tfds``); they are skipped where that folder is absent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import shutil
import socket
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests run tiny models: LLVM's optimisation passes cost more compile time than they save.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# Many tests (and the programs they start as subprocesses) compile the same tiny programs: one
# persistent compilation cache for the session, shared by the xdist workers and every subprocess
# (they inherit the environment), removed at the end. A cache hit loads the executable the first
# compile wrote, so results are unchanged. Set JAX_COMPILATION_CACHE_DIR to choose another.
_SESSION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="swinjax-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

from collections.abc import Callable, Iterator  # noqa: E402

import ml_collections  # noqa: E402
import pytest  # noqa: E402

from tests import tfds_fixture  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# CI and this workplace have a copy of shared/ beside the clone; a user's fresh clone does not.
SHARED_TFDS = REPO.parent / "shared" / "datasets" / "tfds"
requires_shared_tfds = pytest.mark.skipif(
    not (SHARED_TFDS / "cifar10").is_dir(),
    reason=f"extra real-data test: no prepared tfds cifar10 at {SHARED_TFDS} "
    "(<clone>/../shared/datasets/tfds: CI puts a copy of shared/ beside the clone)",
)


def _demo_config() -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location("demo_config", REPO / "experiments" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


# The model family: tests of what every Swin does (train, resume, evaluate, predict, export) run
# over both versions of tiny_test (``@over_versions``: a ``version`` argument, ids v1 and v2).
VERSIONS = (1, 2)
over_versions = pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v}")


def make_tiny_config(*, version: int = 1, **overrides) -> ml_collections.ConfigDict:
    """experiments/demo.py (tiny_test, 16x16, ~25K params, synthetic data: 1080 train / 120 val /
    300 test, batch 64, so 16 steps an epoch), shortened to two quiet epochs; ``version=2``: its
    model as Swin V2 (``model_kwargs.version``)."""
    config = _demo_config()
    config.num_epochs = 2
    config.log_every_steps = 4
    config.progress_bar = False
    config.num_sample_images = 6
    if version != 1:
        config.model_kwargs.version = version
    for k, v in overrides.items():
        config[k] = v
    return config


@pytest.fixture
def tiny_config() -> ml_collections.ConfigDict:
    return make_tiny_config()


@pytest.fixture(scope="session")
def tfds_dir_factory(tmp_path_factory) -> Callable[..., tfds_fixture.TfdsDir]:
    """``factory(spec=tfds_fixture.TINY)`` -> a real tfds data directory holding ``spec``, written
    by tfds' own builder in a temporary folder; each spec is built once per session (per xdist
    worker). E.g. ``factory(TinyImages(name="my_jpegs", image_size=None,
    encoding_format="jpeg"))`` for variable-size JPEGs."""
    built: dict[tfds_fixture.TinyImages, tfds_fixture.TfdsDir] = {}

    def factory(spec: tfds_fixture.TinyImages = tfds_fixture.TINY) -> tfds_fixture.TfdsDir:
        if spec not in built:
            built[spec] = tfds_fixture.build(tmp_path_factory.mktemp("tfds"), spec)
        return built[spec]

    return factory


@pytest.fixture(scope="session")
def tiny_tfds_dir(tfds_dir_factory) -> tfds_fixture.TfdsDir:
    """tfds dataset ``swinjax_test_images`` (16x16x3 PNGs, 4 classes, train 300, test 70) in a
    real tfds data directory: ``make_tiny_config(dataset=tiny_tfds_dir.name,
    data_dir=tiny_tfds_dir.data_dir)`` trains on it like on any prepared tfds dataset."""
    return tfds_dir_factory()


@pytest.fixture
def mock_tfds(tmp_path) -> Callable[[str, int], contextlib.AbstractContextManager[str]]:
    """``with mock_tfds("cifar100", num_examples=40) as data_dir:``: the real tfds code of a
    registered dataset on fake examples (``tfds.testing.mock_data``), opened as prepared in a
    fresh data directory (tfds_fixture.mock_prepared); swinjax's cached splits are cleared on
    leaving. Its metadata records no split sizes: read it with ``input_pipeline="memory"``."""
    count = itertools.count()

    @contextlib.contextmanager
    def mock(name: str, num_examples: int) -> Iterator[str]:
        from swinjax import data

        try:
            with tfds_fixture.mock_prepared(
                tmp_path / f"mock_tfds_{next(count)}", name, num_examples
            ) as data_dir:
                yield data_dir
        finally:
            data.clear_cache()

    return mock


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Records (and refuses) every socket connection or DNS lookup made during the test."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def pytest_unconfigure(config) -> None:
    """The session's compilation cache goes with the process that made it (the xdist controller,
    or a plain pytest run): workers inherit its path and leave it be."""
    if _SESSION_CACHE is not None and not hasattr(config, "workerinput"):
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
