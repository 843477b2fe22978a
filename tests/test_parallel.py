"""Data parallel: 4 CPU devices against 1, batch sharding, replication, padded eval, multi-host
data blocks, and the errors that name their fix.

The 4-device checks run once, in a subprocess (``tests/parallel_check.py``) started with
``--xla_force_host_platform_device_count=4``: JAX fixes its devices when it starts, and this
process has one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from swinjax import data
from swinjax.config import validate_config
from swinjax.data import batching
from swinjax.training import parallel
from tests.conftest import REPO, make_tiny_config


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("parallel") / "report.json"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.parallel_check", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_one_step_on_four_devices_matches_one_device(four_devices) -> None:
    r = four_devices
    assert r["device_count"] == 4 and r["mesh_sizes"] == [1, 4]
    loss1, loss4 = r["loss"]
    np.testing.assert_allclose(loss4, loss1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["grad_norm"][1], r["grad_norm"][0], rtol=1e-5, atol=1e-6)
    assert r["params_allclose"], f"params differ by up to {r['params_max_diff']}"
    assert r["opt_state_allclose"], f"optimizer state differs by up to {r['opt_state_max_diff']}"
    assert r["input_state_donated"]  # donate_argnums still works on the replicated state


def test_batch_is_sharded_and_state_stays_replicated(four_devices) -> None:
    r = four_devices
    for key in ("batch_image", "batch_label"):
        facts = r[key]
        assert facts["spec"] == "P('data',)" and not facts["fully_replicated"], facts
        assert facts["shard_rows"] == [2, 2, 2, 2] and facts["shard_devices"] == 4, facts
    assert r["batch_shards_reassemble"] and r["batch_shards_distinct"]
    outputs = r["params_out"] + r["opt_state_out"] + [r["step_out"]]
    assert len(r["params_out"]) > 10
    for facts in outputs:
        assert facts["spec"] == "P()" and facts["fully_replicated"], facts
        assert facts["devices"] == 4 and facts["shard_devices"] == 4, facts


def test_padded_eval_on_four_devices_counts_exactly_the_real_rows(four_devices) -> None:
    r = four_devices
    assert r["padded_eval_rows"] == 4  # batch 3 rounded up to the 4 devices
    eval4, eval1 = r["eval4"], r["eval1"]
    assert eval4["num_examples"] == eval1["num_examples"] == 10  # 4 + 4 + 2 real of 12 rows
    for key in ("loss", "top1", "top5"):
        np.testing.assert_allclose(eval4[key], eval1[key], rtol=1e-5, atol=1e-6)


def test_indivisible_batch_fails_before_training_naming_the_fix(four_devices) -> None:
    r = four_devices
    assert r["divisibility_error"] == (
        "batch_size 130 is not divisible by 4 devices; use --config.batch_size=128"
    )
    assert not r["divisibility_workdir_created"]


def test_training_loop_runs_on_four_devices(four_devices) -> None:
    e2e = four_devices["e2e"]
    assert e2e["step"] == 2 and e2e["stopped_by"] == "max_steps" and e2e["checkpoints"] == ["2"]


# ------------------------------------------------------------------------- in this process


def test_one_device_is_a_one_device_mesh() -> None:
    mesh = parallel.make_mesh()
    assert mesh.axis_names == (parallel.DATA_AXIS,) and mesh.size == jax.device_count()
    batch = {"x": np.arange(6.0).reshape(3, 2)}
    put = parallel.put_batch(batch, mesh)
    assert put["x"].sharding == parallel.batch_sharding(mesh)
    np.testing.assert_array_equal(put["x"], batch["x"])
    tree = {"w": np.arange(3.0), "rng": jax.random.key(7)}
    replicated = parallel.replicated_sharding(mesh)
    # replicate_from_processes is the multi-host path; with one process it must agree too.
    for state in (
        parallel.replicate(tree, mesh),
        parallel.replicate_from_processes(tree, replicated),
    ):
        assert state["w"].sharding == state["rng"].sharding == replicated
        np.testing.assert_array_equal(state["w"], tree["w"])
        np.testing.assert_array_equal(
            jax.random.key_data(state["rng"]), jax.random.key_data(tree["rng"])
        )


def test_check_batch_size_names_a_batch_size_that_works() -> None:
    batching.check_batch_size(128, 4)
    with pytest.raises(ValueError, match=r"^batch_size 130 is not divisible by 4 devices; use "):
        batching.check_batch_size(130, 4)
    with pytest.raises(ValueError, match=r"--config.batch_size=8$"):
        batching.check_batch_size(3, 8)  # smaller than the device count: one row per device
    with pytest.raises(ValueError, match="eval_batch_size 5 .* 2 processes; .*eval_batch_size=4"):
        batching.check_batch_size(5, 2, key="eval_batch_size", unit="processes")
    assert [batching.padded_batch_size(b, 4) for b in (1, 4, 5, 130)] == [4, 4, 8, 132]


def test_each_process_reads_a_disjoint_block_of_every_global_batch() -> None:
    config = make_tiny_config()
    split = data.load_split(config, config.train_split)
    whole = list(data.train_batches(split, 12, seed=3, epoch=1, start_step=2))
    parts = [
        list(data.train_batches(split, 12, 3, 1, 2, process_index=i, process_count=3))
        for i in range(3)
    ]
    assert all(len(p) == len(whole) for p in parts)
    for step, batch in enumerate(whole):
        for key in ("image", "label"):
            blocks = [p[step][key] for p in parts]
            assert all(len(b) == 4 for b in blocks)
            np.testing.assert_array_equal(np.concatenate(blocks), batch[key])
    assert [batching.process_rows(12, i, 3) for i in range(3)] == [
        slice(0, 4),
        slice(4, 8),
        slice(8, 12),
    ]
    with pytest.raises(ValueError, match="batch_size 10 is not divisible by 3 processes"):
        next(data.train_batches(split, 10, 0, 0, process_index=0, process_count=3))


def test_multi_process_eval_blocks_cover_every_example_once() -> None:
    split = data.InMemorySplit(
        np.zeros((11, 2, 2, 1), np.uint8), np.arange(11, dtype=np.int32), "eleven", 11
    )
    parts = [list(data.eval_batches(split, 4, process_index=i, process_count=2)) for i in range(2)]
    assert len(parts[0]) == len(parts[1]) == 3  # the same number of steps on every process
    real = [
        int(label)
        for batches in zip(*parts, strict=True)
        for part in batches
        for label, mask in zip(part["label"], part["mask"], strict=True)
        if mask
    ]
    assert real == list(range(11))
    assert all(part["mask"].shape == (2,) for batches in parts for part in batches)


def test_distributed_flag_is_validated_and_off_by_default() -> None:
    config = make_tiny_config()
    assert config.distributed is False
    assert parallel.initialize_distributed(False) is False  # a single host starts nothing
    bad = ml_collections.ConfigDict({**config.to_dict(), "distributed": "yes"})  # e.g. from JSON
    with pytest.raises(ValueError, match="config.distributed must be True or False"):
        validate_config(bad)
