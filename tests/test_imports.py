"""Importing swinjax changes nothing in the process: no environment variable, no XLA flag, no
matplotlib backend, no command-line flag. Checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

# Imported first, so that what the dependencies do when they are imported (jax sets
# TF_CPP_MIN_LOG_LEVEL, for one) is in the baseline: what is checked is swinjax's own doing.
PROBE = r"""
import json, os, pkgutil, importlib, tempfile
import jax, numpy, matplotlib, ml_collections, optax, flax, orbax.checkpoint
import sklearn  # sets KMP_DUPLICATE_LIB_OK and KMP_INIT_AT_FORK when imported
from absl import flags
before = dict(os.environ)
backend = matplotlib.get_backend()
import swinjax
modules = sorted(m.name for m in pkgutil.walk_packages(swinjax.__path__, "swinjax."))
for name in modules:
    importlib.import_module(name)
from swinjax.training import plots
plots.plot_history([{"epoch": 1, "train_loss": 1.0, "val_loss": 2.0}], tempfile.mktemp(".png"))
after = dict(os.environ)
changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
print(json.dumps({
    "modules": modules,
    "changed_env": changed,
    "backend": [backend, matplotlib.get_backend()],
    "flags": sorted(name for name in ("config", "workdir", "ckpt") if name in flags.FLAGS),
    "backends_started": jax._src.xla_bridge.backends_are_initialized(),
}))
"""


def test_importing_every_module_changes_nothing_in_the_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
    env["MPLBACKEND"] = "svg"  # a notebook's choice, say: it must survive
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"swinjax.train", "swinjax.presets", "swinjax.runtime", "swinjax.training.loop"} <= set(
        found["modules"]
    )
    assert found["changed_env"] == []
    assert found["backend"] == ["svg", "svg"]
    assert found["flags"] == []
    assert found["backends_started"] is False  # nothing touched a device on import


def test_configure_is_the_explicit_opt_in() -> None:
    probe = (
        "import json, os; from swinjax import runtime; before = os.environ.get('XLA_FLAGS'); "
        "added = runtime.configure(restart=False); "
        "print(json.dumps({'before': before, 'added': added, 'after': os.environ.get('XLA_FLAGS'),"
        " 'tested': runtime._jaxlib_version().startswith(runtime.TESTED_JAXLIB)}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "SWINJAX_RUNTIME_TUNING")}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["before"] is None
    if found["tested"]:  # the flag applies to the jaxlib versions it was measured with
        assert found["added"] == ["--xla_cpu_experimental_ynn_fusion_type=-reduce"]
        assert found["after"] == found["added"][0]
    else:
        assert found["added"] == [] and found["after"] is None


def test_the_programs_start_imports_only_the_standard_library() -> None:
    """``runtime.prepare_process()`` runs before a program's imports (and the script commands'
    module before the program): what they import must cost nothing and touch no JAX."""
    probe = (
        "import json, sys; before = set(sys.modules); "
        "import swinjax.runtime, swinjax.errors, swinjax.scripts; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert "swinjax.runtime" in imported
    outside = [m for m in imported if m.split(".")[0] not in sys.stdlib_module_names]
    assert sorted(outside) == ["swinjax", "swinjax.errors", "swinjax.runtime", "swinjax.scripts"]
