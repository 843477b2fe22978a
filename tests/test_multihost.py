"""Multi-host for real: two processes on localhost through ``jax.distributed`` (CPU collectives,
a free port), one CPU device each, against one process with two local devices.

Both processes run ``python -m swinjax.train --config.distributed=True`` on one shared workdir.
Process 1 gets SIGTERM after the first checkpoint: through JAX's preemption sync point both
processes stop at the same step, save it together, and exit cleanly; a second two-process
invocation resumes from there to the end. The final parameters equal those of one process
training the same global batches on two local devices.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from swinjax import data
from swinjax.config import build_model
from swinjax.training import checkpoint
from swinjax.training import state as state_lib
from swinjax.training import workdir as workdir_lib
from tests.conftest import REPO

EPOCHS = 8  # 16 steps an epoch: long enough for the preemption to land mid-run
ARGS = [
    "--config",
    str(REPO / "experiments/demo.py"),
    f"--config.num_epochs={EPOCHS}",
    "--config.progress_bar=False",
    "--config.test_split=",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    # Tests compile tiny programs: skip LLVM's optimisation passes (as tests/conftest.py does).
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    env["SWINJAX_RUNTIME_TUNING"] = "0"  # no restart with huge pages: the PIDs stay ours
    env.update(extra)
    return env


def _train(workdir, *extra: str, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "swinjax.train", *ARGS, "--workdir", str(workdir), *extra]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _two_processes(workdir, *extra: str) -> list[subprocess.Popen]:
    address = f"127.0.0.1:{_free_port()}"
    return [
        _train(
            workdir,
            "--config.distributed=True",
            *extra,
            env=_env(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)),
        )
        for i in range(2)
    ]


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _final_state(workdir):
    config = workdir_lib.load_config(workdir)
    split = data.load_split(config, config.train_split)
    template = state_lib.create_train_state(config, build_model(config, split), steps_per_epoch=1)
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    state, meta = ckpt.restore_latest(template)
    return state, meta


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, two local CPU devices, the same global batches, uninterrupted."""
    workdir = tmp_path_factory.mktemp("one_process")
    env = _env(
        XLA_FLAGS="--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=2"
    )
    result = _result(_train(workdir, env=env))
    assert result["step"] == EPOCHS * 16 and result["stopped_by"] is None
    return _final_state(workdir)


@pytest.mark.slow
def test_two_processes_preempted_then_resumed_equal_one_process(tmp_path, reference) -> None:
    workdir = tmp_path / "two_processes"
    procs = _two_processes(workdir)
    first_checkpoint = workdir / "checkpoints" / "16"
    deadline = time.monotonic() + 300
    while not first_checkpoint.is_dir() and procs[1].poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # one host is told; both must stop at one step
    stopped = [_result(p) for p in procs]
    assert stopped[0] == stopped[1], stopped
    step = stopped[0]["step"]
    assert stopped[0]["stopped_by"] == "preemption" and 16 < step < EPOCHS * 16
    ckpt_dir = workdir / "checkpoints" / str(step)
    # Both processes wrote their part of the checkpoint into the shared workdir.
    assert {p.name for p in (ckpt_dir / "state").glob("ocdbt.process_*")} == {
        "ocdbt.process_0",
        "ocdbt.process_1",
    }

    resumed = [_result(p) for p in _two_processes(workdir)]
    assert resumed[0] == resumed[1] and resumed[0]["step"] == EPOCHS * 16
    state, meta = _final_state(workdir)
    ref_state, ref_meta = reference
    assert meta == ref_meta and int(state.step) == int(ref_state.step)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params), strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise: the same sums in the same order


@pytest.mark.slow
def test_two_processes_stream_resumed_equal_one_process(tmp_path, tiny_tfds_dir) -> None:
    """The streaming pipeline: data shards = devices, each process reading only its shard; a
    run stopped mid-epoch (max_steps) and resumed by a second two-process invocation ends with
    the parameters of one process with two local devices, bitwise."""
    stream = [
        f"--config.dataset={tiny_tfds_dir.name}",
        f"--config.data_dir={tiny_tfds_dir.data_dir}",
        "--config.input_pipeline=stream",
        "--config.batch_size=30",  # 15 rows per data shard; train[:90%]: 135 a shard, 9 steps
    ]
    one = _env(
        XLA_FLAGS="--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=2"
    )
    ref = _result(_train(tmp_path / "one", *stream, "--config.num_epochs=2", env=one))
    assert ref["step"] == 18
    two = tmp_path / "two"
    first = [_result(p) for p in _two_processes(two, *stream, "--config.num_epochs=2",
                                                 "--config.max_steps=13")]  # fmt: skip
    assert first[0] == first[1] and first[0]["step"] == 13
    assert first[0]["stopped_by"] == "max_steps"
    second = [_result(p) for p in _two_processes(two, *stream, "--config.num_epochs=2")]
    assert second[0] == second[1] and second[0]["step"] == 18
    (a, _), (b, _) = _final_state(two), _final_state(tmp_path / "one")
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)
