"""Sharded train state (``config.sharding='fsdp'``): the rule in-process, and on 8, 4 and 1 CPU
devices in processes of their own (``tests/fsdp_check.py``): fsdp equals replicated, holds about
1/8 of the state per device, gradient accumulation on 8 devices equals one batch, a run saved on
8 devices resumes on 4 (fsdp) and on 1 (replicated), and is served on this process's one device
by eval, predict and the stablehlo export as the replicated run is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec
from PIL import Image

from swinjax import config as config_lib
from swinjax import eval as eval_cli
from swinjax.errors import ConfigError
from swinjax.serve import Predictor
from swinjax.serve.export import export_model
from swinjax.serve.export_stablehlo import MODULE_FILE
from swinjax.training import checkpoint, inference, parallel, sharding
from tests.conftest import REPO, make_tiny_config


def test_fsdp_splits_the_largest_divisible_axis_and_leaves_the_rest_replicated() -> None:
    assert sharding.sharded_axis((96, 384), 8) == 1  # the largest dimension
    assert sharding.sharded_axis((384, 96), 8) == 0
    assert sharding.sharded_axis((3, 4, 4, 1000), 8) == 3
    assert sharding.sharded_axis((1001, 64), 8) == 1  # the largest one 8 does not divide: next
    assert sharding.sharded_axis((1001, 65), 8) is None  # none divisible: replicated
    assert sharding.sharded_axis((64, 32), 8) is None  # under MIN_SHARDED_SIZE: replicated
    assert sharding.sharded_axis((), 8) is None
    assert sharding.sharded_axis((96, 384), 1) is None  # one device: nothing to split
    assert sharding.partition_spec((96, 384), 8, "fsdp") == PartitionSpec(None, "data")
    assert sharding.partition_spec((4096,), 8, "fsdp") == PartitionSpec("data")
    assert sharding.partition_spec((96, 384), 8, "replicated") == PartitionSpec()


def test_state_shardings_follow_the_tree_on_a_one_device_mesh() -> None:
    mesh = parallel.make_mesh(jax.devices()[:1])
    tree = {"w": jnp.zeros((64, 128)), "b": jnp.zeros((3,)), "key": jax.random.key(0)}
    got = sharding.state_shardings(tree, mesh, "fsdp")
    assert jax.tree.structure(got) == jax.tree.structure(tree)
    assert all(s.spec == PartitionSpec() and s.mesh == mesh for s in jax.tree.leaves(got))
    placed = sharding.place(tree, mesh, "fsdp")
    assert parallel.bytes_per_device(placed) == 64 * 128 * 4 + 3 * 4 + 8


def test_sharding_key_is_validated_and_replicated_by_default() -> None:
    assert config_lib.base_config().sharding == "replicated"
    config_lib.validate_config(make_tiny_config(sharding="fsdp"))
    with pytest.raises(ConfigError, match="'replicated'.*'fsdp'"):
        config_lib.validate_config(make_tiny_config(sharding="zero3"))
    with pytest.raises(ConfigError, match="one process"):
        config_lib.validate_config(make_tiny_config(sharding="fsdp", distributed=True))


def _run_check(devices: int, *args: str) -> dict:
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} "
        "--xla_backend_optimization_level=0",
        "JAX_PLATFORMS": "cpu",
    }
    out = args[1]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fsdp_check", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> tuple[dict, str]:
    root = tmp_path_factory.mktemp("fsdp")
    return _run_check(8, "parity", str(root / "parity.json"), str(root)), str(root)


@pytest.mark.slow
def test_fsdp_equals_replicated_for_five_steps_on_eight_devices(eight_devices) -> None:
    report, _ = eight_devices
    assert report["device_count"] == 8
    replicated, fsdp = report["losses"]
    assert len(replicated) == len(fsdp) == 5
    for a, b in zip(replicated, fsdp, strict=True):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(a))
    assert any("'data'" in spec for spec in report["fsdp_param_specs_after_steps"])  # stays split
    replicated_eval, fsdp_eval = report["eval"]
    assert fsdp_eval["num_examples"] == replicated_eval["num_examples"] == 24
    for key in ("loss", "top1", "top5"):
        assert abs(fsdp_eval[key] - replicated_eval[key]) <= 1e-6, key


@pytest.mark.slow
def test_fsdp_holds_at_most_a_sixth_of_the_replicated_state_per_device(eight_devices) -> None:
    replicated_bytes, fsdp_bytes = eight_devices[0]["bytes"]
    assert fsdp_bytes * 6 <= replicated_bytes


@pytest.mark.slow
@pytest.mark.parametrize(("devices", "mode"), [(4, "fsdp"), (1, "replicated")])
def test_saved_on_eight_devices_resumes_on_fewer(eight_devices, devices, mode) -> None:
    root = eight_devices[1]
    report = _run_check(devices, "resume", f"{root}/resume_{devices}.json", root, mode)
    assert report["device_count"] == devices
    assert report["steps"] == [4, 4] and report["step"] == 4
    assert report["max_diff"] <= 1e-6  # params and optimizer state of the uninterrupted run


@pytest.mark.slow
def test_accumulation_on_eight_devices_gives_the_losses_of_one_batch(eight_devices) -> None:
    runs = eight_devices[0]["accumulation"]  # no dropout, drop path or augmentation
    one_batch = runs["replicated_k1"]
    assert len(one_batch) == 3 and one_batch[0] != one_batch[-1]  # it trains
    for name in ("replicated_k2", "fsdp_k2"):  # two microbatches of 8 rows: one a device
        np.testing.assert_allclose(runs[name], one_batch, rtol=1e-5, err_msg=name)


def _served(run_dir: Path, image_paths: list[Path], out: Path, capsys) -> dict[str, np.ndarray]:
    """What ``run_dir``'s latest checkpoint gives, restored here: ``swinjax.eval``'s scores on
    24 training examples, ``Predictor``'s logits and the stablehlo export's logits of the
    images, and its parameters read without a template (as ``init_from`` reads a workdir)."""
    assert eval_cli.main(["swinjax.eval", "--ckpt", str(run_dir), "--split", "train[:24]"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _, predicted, failed = Predictor.load(run_dir, batch_size=8).logits(image_paths)
    assert not failed
    export_model(inference.restore_params(run_dir), "stablehlo", out)
    exported = jax.export.deserialize((out / MODULE_FILE).read_bytes())
    images = np.stack([np.asarray(Image.open(p)) for p in image_paths])
    params, _ = checkpoint.restore(run_dir, "latest")  # numpy arrays, no shardings
    return {
        "eval": np.array([record[k] for k in ("loss", "top1", "top5", "num_examples")]),
        "predict": predicted,
        "export": np.asarray(exported.call(images)["logits"]),
        "params": np.concatenate([np.ravel(a) for a in jax.tree.leaves(params)]),
    }


@pytest.mark.slow
def test_fsdp_checkpoint_is_served_on_one_device_as_the_replicated_run(
    eight_devices, tmp_path, capsys
) -> None:
    assert jax.device_count() == 1  # this process: restored from 8 shards to one device
    rng = np.random.default_rng(0)
    image_paths = []
    for i in range(5):
        image_paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(image_paths[-1])
    root = Path(eight_devices[1])
    fsdp = _served(root / "saved", image_paths, tmp_path / "fsdp_hlo", capsys)
    replicated = _served(root / "saved_replicated", image_paths, tmp_path / "rep_hlo", capsys)
    assert fsdp["eval"][-1] == 24 and fsdp["predict"].shape == (5, 10)
    for key in ("eval", "predict", "export", "params"):
        np.testing.assert_allclose(fsdp[key], replicated[key], rtol=0, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(fsdp["export"], fsdp["predict"], rtol=0, atol=1e-5)
