"""Data parallel on 4 CPU devices against 1, in a process of its own (tests/test_parallel.py).

JAX fixes its device count when it starts, and the test process has one CPU device, so
test_parallel.py runs ``python -m tests.parallel_check OUT.json`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``. This script measures; it writes what it
found as one JSON object to OUT.json, and the tests assert on it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from swinjax import data
from swinjax.config import build_model
from swinjax.data import batching
from swinjax.training import evaluation, parallel, steps, trainer
from swinjax.training import state as state_lib
from tests.conftest import make_tiny_config

BATCH = 8


def _leaves_allclose(a: Any, b: Any) -> tuple[bool, float]:
    """Whether every leaf pair is allclose (rtol 1e-5, atol 1e-6), and the largest difference."""
    ok, worst = True, 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        ok &= bool(np.allclose(x, y, rtol=1e-5, atol=1e-6))
        worst = max(worst, float(np.max(np.abs(x - y), initial=0.0)))
    return ok, worst


def _sharding_facts(x: jax.Array) -> dict[str, Any]:
    shards = x.addressable_shards
    return {
        "spec": str(x.sharding.spec),
        "fully_replicated": bool(x.sharding.is_fully_replicated),
        "devices": len(x.sharding.device_set),
        "shard_rows": [int(s.data.shape[0]) if s.data.ndim else 0 for s in shards],
        "shard_devices": len({s.device for s in shards}),
    }


def main(out_path: str) -> None:
    config = make_tiny_config()  # crop/flip augmentation and dropout: randomness must match too
    split = data.load_split(config, config.train_split)
    model = build_model(config, split)
    batch = next(data.train_batches(split, BATCH, config.seed, epoch=0))
    mesh1 = parallel.make_mesh(jax.devices()[:1])
    mesh4 = parallel.make_mesh()

    def one_step(mesh: Any) -> tuple[Any, Any, dict, Any]:
        # A fresh state each time: train_step donates (deletes) its input state's buffers.
        state = parallel.replicate(
            state_lib.create_train_state(config, model, steps_per_epoch=16), mesh
        )
        prefetched = data.prefetch_to_device(
            iter([batch]), size=1, sharding=parallel.batch_sharding(mesh)
        )
        on_device = next(prefetched)
        prefetched.close()
        new_state, metrics = steps.train_step(state, on_device)
        return state, new_state, jax.device_get(metrics), on_device

    _, one, metrics1, _ = one_step(mesh1)
    before4, four, metrics4, batch4 = one_step(mesh4)
    params_ok, params_diff = _leaves_allclose(one.params, four.params)
    opt_ok, opt_diff = _leaves_allclose(one.opt_state, four.opt_state)
    shard_images = [np.asarray(s.data) for s in batch4["image"].addressable_shards]
    shard_order = sorted(batch4["image"].addressable_shards, key=lambda s: s.index[0].start or 0)

    # Evaluation: 10 examples in batches of 3, padded to 4 (a multiple of the 4 devices).
    small = split.head(10)
    eval4 = evaluation.evaluate(four, small, 3, mesh4)
    eval1 = evaluation.evaluate(one, small, 10, mesh1)  # one unpadded batch on one device
    padded = next(data.eval_batches(small, batching.padded_batch_size(3, mesh4.size)))

    # Divisibility: refused before anything is loaded, compiled or written.
    workdir = Path(tempfile.mkdtemp()) / "run"
    try:
        trainer.train_and_evaluate(make_tiny_config(batch_size=130), workdir)
        error = None
    except ValueError as e:
        error = str(e)

    # The training loop on 4 devices (evaluation is checked above): two steps, a checkpoint.
    e2e_dir = Path(tempfile.mkdtemp()) / "e2e"
    e2e_config = make_tiny_config(batch_size=BATCH, max_steps=2, val_split="", test_split="")
    e2e = trainer.train_and_evaluate(e2e_config, e2e_dir)

    report = {
        "device_count": jax.device_count(),
        "mesh_sizes": [mesh1.size, mesh4.size],
        "loss": [float(metrics1["loss"]), float(metrics4["loss"])],
        "grad_norm": [float(metrics1["grad_norm"]), float(metrics4["grad_norm"])],
        "params_allclose": params_ok,
        "params_max_diff": params_diff,
        "opt_state_allclose": opt_ok,
        "opt_state_max_diff": opt_diff,
        "input_state_donated": all(x.is_deleted() for x in jax.tree.leaves(before4.params)),
        "batch_image": _sharding_facts(batch4["image"]),
        "batch_label": _sharding_facts(batch4["label"]),
        "batch_shards_reassemble": bool(
            np.array_equal(
                np.concatenate([np.asarray(s.data) for s in shard_order]), batch["image"]
            )
        ),
        "batch_shards_distinct": len({a.tobytes() for a in shard_images}) == 4,
        "params_out": [_sharding_facts(x) for x in jax.tree.leaves(four.params)],
        "opt_state_out": [_sharding_facts(x) for x in jax.tree.leaves(four.opt_state)],
        "step_out": _sharding_facts(four.step),
        "eval4": eval4,
        "eval1": eval1,
        "padded_eval_rows": int(padded["mask"].shape[0]),
        "divisibility_error": error,
        "divisibility_workdir_created": workdir.exists(),
        "e2e": {
            "step": e2e["step"],
            "stopped_by": e2e["stopped_by"],
            "checkpoints": sorted(p.name for p in (e2e_dir / "checkpoints").iterdir()),
        },
    }
    Path(out_path).write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
