"""Sharded train state (``sharding='fsdp'``) on several CPU devices, in a process of its own
(tests/test_fsdp.py starts it with ``--xla_force_host_platform_device_count=N``).

``python -m tests.fsdp_check parity OUT.json WORKDIR``: on 8 devices, five train steps replicated
and fsdp (losses, the state's per-device bytes and shardings after them); three steps without
dropout or augmentation, replicated without accumulation and replicated and fsdp with two
microbatches; then an uninterrupted 4-step fsdp run in WORKDIR/straight and 2-step ones in
WORKDIR/saved (fsdp) and WORKDIR/saved_replicated.
``python -m tests.fsdp_check resume OUT.json WORKDIR SHARDING``: on this process's devices, the
2-step run resumed to 4 steps in a copy of WORKDIR/saved, and its final state against the
uninterrupted run's (both restored on one device).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from swinjax import data
from swinjax.config import build_model
from swinjax.training import checkpoint, evaluation, parallel, sharding, steps, trainer
from swinjax.training import state as state_lib
from swinjax.training import workdir as workdir_lib
from tests.conftest import make_tiny_config

STEPS = 5
ACCUM_STEPS = 3


def _config(**overrides: Any) -> Any:
    # embed_dim 64: most bytes in matrices that 8 divides (the rest: norms, biases, tables).
    base = dict(model_kwargs={"embed_dim": 64}, batch_size=16, val_split="", test_split="")
    return make_tiny_config(**{**base, **overrides})


def _train(config: Any, mode: str, n_steps: int = STEPS) -> tuple[list[float], Any, Any]:
    """The losses of ``n_steps`` train steps on the first batches of the epoch, with the state
    placed by ``mode``; the final state and the split."""
    split = data.load_split(config, config.train_split)
    model = build_model(config, split)
    mesh = parallel.make_mesh()
    state = state_lib.create_train_state(config, model, steps_per_epoch=16)
    state = sharding.place(state, mesh, mode)
    losses = []
    for batch in list(data.train_batches(split, config.batch_size, config.seed, 0))[:n_steps]:
        state, metrics = steps.train_step(state, parallel.put_batch(batch, mesh))
        losses.append(float(jax.device_get(metrics["loss"])))
    return losses, state, split


def _losses(config: Any, mode: str) -> tuple[list[float], int, list[str], dict]:
    """:func:`_train`'s losses, the per-device bytes and the parameters' specs of the state after
    the steps, and its scores on 24 examples."""
    losses, state, split = _train(config, mode)
    specs = [str(x.sharding.spec) for x in jax.tree.leaves(state.params)]
    mesh = parallel.make_mesh()
    scores = evaluation.evaluate(state, split.head(24), 8, mesh)  # the sharded state scores too
    return losses, parallel.bytes_per_device(state), specs, scores


def _accumulation_losses() -> dict[str, list[float]]:
    """Losses of :data:`ACCUM_STEPS` steps without dropout, drop path or augmentation: replicated
    without accumulation, and replicated and fsdp with two microbatches of the same batches."""
    exact = dict(augment="none", model_kwargs={"embed_dim": 64, "drop_path_rate": 0.0})
    runs = (("replicated", 1), ("replicated", 2), ("fsdp", 2))
    return {
        f"{mode}_k{k}": _train(_config(grad_accum_steps=k, **exact), mode, ACCUM_STEPS)[0]
        for mode, k in runs
    }


def parity(out: Path, workdir: Path) -> None:
    config = _config()
    rep_losses, rep_bytes, _, rep_eval = _losses(config, "replicated")
    fsdp_losses, fsdp_bytes, specs, fsdp_eval = _losses(config, "fsdp")
    trainer.train_and_evaluate(_config(max_steps=4, sharding="fsdp"), workdir / "straight")
    trainer.train_and_evaluate(_config(max_steps=2, sharding="fsdp"), workdir / "saved")
    trainer.train_and_evaluate(_config(max_steps=2), workdir / "saved_replicated")
    report = {
        "device_count": jax.device_count(),
        "losses": [rep_losses, fsdp_losses],
        "bytes": [rep_bytes, fsdp_bytes],
        "fsdp_param_specs_after_steps": specs,
        "eval": [rep_eval, fsdp_eval],
        "accumulation": _accumulation_losses(),
    }
    out.write_text(json.dumps(report))


def _final_state(workdir: Path) -> Any:
    config = workdir_lib.load_config(workdir)
    split = data.load_split(config, config.train_split)
    template = state_lib.create_train_state(config, build_model(config, split), steps_per_epoch=1)
    state, _ = checkpoint.Checkpointer(workdir, read_only=True).restore_latest(template)
    return state


def resume(out: Path, workdir: Path, mode: str) -> None:
    run_dir = workdir / f"resumed_{jax.device_count()}_{mode}"
    shutil.copytree(workdir / "saved", run_dir)
    result = trainer.train_and_evaluate(_config(max_steps=4, sharding=mode), run_dir)
    a, b = _final_state(workdir / "straight"), _final_state(run_dir)
    pairs = list(
        zip(
            jax.tree.leaves((a.params, a.opt_state)),
            jax.tree.leaves((b.params, b.opt_state)),
            strict=True,
        )
    )
    worst = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)), initial=0.0)) for x, y in pairs)
    report = {
        "device_count": jax.device_count(),
        "step": int(result["step"]),
        "steps": [int(a.step), int(b.step)],
        "max_diff": worst,
    }
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    if sys.argv[1] == "parity":
        parity(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        resume(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
