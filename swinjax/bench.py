"""Throughput benchmark: ``python -m swinjax.bench --config experiments/NAME.py [--json]``.

Measures, for the config's model and batch size:
- ``compile_s``: lowering + compiling ``train_step``;
- ``train_images_per_s``: steady-state ``train_step`` on a device-resident batch (after warm-up,
  synchronised at the end of the timed window);
- ``eval_images_per_s``: ``eval_step`` likewise;
- ``pipeline_images_per_s``: the host input pipeline alone (epoch order, batch gather, transfer);
- ``epoch_images_per_s``: the training loop as ``train.py`` runs it (pipeline, prefetch, metrics
  fetched one step late) over the first ``--epoch_steps`` steps of an epoch (0: all of them),
  and its ratio to the pure step time;
- ``epoch_with_validation_s``: a whole epoch, that loop's time per step times the epoch's steps
  plus one measured pass over the validation split, and its ratio to the pure step time;
- the kernel set (``kernels``, as resolved) and the rematerialisation (``remat``) it ran with;
- peak memory: ``peak_host_rss_mib`` (the process's peak resident memory: on a CPU what the
  run used, the dataset included), on an accelerator ``peak_device_memory_mib``, and
  ``train_step_temp_mib``, XLA's buffers of ``train_step`` beyond its arguments and outputs
  (activations kept for the backward pass: what ``remat`` reduces), on any backend;
- on an accelerator the model FLOPs utilisation from XLA's cost analysis;
- with ``--profile``, where a train step's time goes, by XLA op and by model module
  (:mod:`swinjax.training.profiling`).

The input pipeline reads the configured dataset; where it is not prepared (CIFAR-100 on an offline
machine), a synthetic dataset of the same image shape and class count stands in, and the output
says so. With ``--json`` the last line printed is one JSON object.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX or TensorFlow is imported: see swinjax.runtime
    from swinjax import runtime

    runtime.prepare_process()

import contextlib
import resource
import time
from typing import Any

import jax
import jax.numpy as jnp
from absl import flags

from swinjax import cli, data
from swinjax.config import build_model, input_size, model_overrides, validate_config
from swinjax.data.batching import check_batch_size
from swinjax.errors import DatasetNotFoundError
from swinjax.models.layers import kernel_sets
from swinjax.training import evaluation, loop, parallel, profiling, steps
from swinjax.training.state import create_train_state

# Dense bf16 peak FLOP/s by device kind (datasheets), for model FLOPs utilisation.
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
}


def _peak_flops(device: Any) -> float | None:
    kind = getattr(device, "device_kind", "")
    for name, flops in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return flops
    return None


def _train_split(config: Any) -> tuple[data.Split, str]:
    try:
        return data.load_split(config, config.train_split, input_size(config)), config.dataset
    except DatasetNotFoundError:
        from swinjax.models import create_model

        model = create_model(config.model, **model_overrides(config))
        size = model.img_size if isinstance(model.img_size, int) else model.img_size[0]
        stand_in = config.copy_and_resolve_references()
        stand_in.dataset = data.SYNTHETIC
        stand_in.update(
            synthetic_num_classes=model.num_classes,
            synthetic_image_size=size,
            synthetic_channels=model.in_chans,
            synthetic_train_examples=50_000,
        )
        note = f"synthetic stand-in ({config.dataset} is not prepared here)"
        return data.load_split(stand_in, "train"), note


def _val_split(config: Any, train: data.Split) -> data.Split:
    """The config's validation split; for a synthetic stand-in (or no validation split), the
    first 10% of the training split, the size the default 90/10 split would give."""
    if config.get("val_split") and not train.name.startswith(data.SYNTHETIC):
        return data.load_split(config, config.val_split, input_size(config))
    return train.head(max(1, train.num_examples // 10))


def _timed(fn: Any, n: int) -> float:
    start = time.perf_counter()
    out = None
    for _ in range(n):
        out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start


def run(
    config: Any,
    batch_size: int = 0,
    n_steps: int = 20,
    warmup: int = 3,
    epoch_steps: int = 60,
    profile: bool = False,
) -> dict[str, Any]:
    """Every figure of the module docstring, as one JSON-able dict."""
    if batch_size:
        config.batch_size = batch_size
    validate_config(config)
    bs = config.batch_size
    split, source = _train_split(config)
    mesh = parallel.make_mesh()  # data parallel over every device, as train.py runs
    check_batch_size(bs, mesh.size)
    state = create_train_state(
        config, build_model(config, split), steps_per_epoch=max(1, split.steps_per_epoch(bs))
    )
    state = parallel.replicate(state, mesh)
    batch = parallel.put_batch(next(data.train_batches(split, bs, config.seed, 0)), mesh)

    t0 = time.perf_counter()
    compiled = steps.train_step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    step_flops = float(cost.get("flops", 0.0)) if cost else 0.0
    temp = getattr(compiled.memory_analysis(), "temp_size_in_bytes", None)

    state, train_s, eval_s = _step_times(state, batch, n_steps, warmup)
    state, result = _pipeline_and_loop(
        config, state, split, mesh, n_steps, epoch_steps, train_s / n_steps
    )
    device = jax.devices()[0]
    result = {
        "config": config.model,
        "batch_size": bs,
        "dtype": config.dtype,
        "kernels": kernel_sets.resolve(state.model.kernels),
        "remat": state.model.remat,
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')} x{jax.device_count()}",
        "compile_s": round(compile_s, 3),
        "train_images_per_s": round(n_steps * bs / train_s, 1),
        "train_ms_per_step": round(1000 * train_s / n_steps, 2),
        "eval_images_per_s": round(n_steps * bs / eval_s, 1),
        **result,
        "step_gflops": round(step_flops / 1e9, 3),
        **({"train_step_temp_mib": round(temp / 2**20, 1)} if temp is not None else {}),
        "data": source,
        **_memory(device),
    }
    peak = _peak_flops(device)
    if peak and step_flops:
        result["mfu"] = round(step_flops * n_steps / train_s / jax.device_count() / peak, 4)
    if profile:
        result["profile"] = profiling.profile_step(
            steps.train_step, compiled.as_text(), (state, batch)
        )
    return result


def _step_times(state: Any, batch: Any, n_steps: int, warmup: int) -> tuple[Any, float, float]:
    """Seconds of ``n_steps`` train steps, then of ``n_steps`` eval steps, on one resident batch
    (after ``warmup`` untimed ones), synchronised at the end of each timed window."""
    holder = {"state": state}

    def one_train_step():
        holder["state"], metrics = steps.train_step(holder["state"], batch)
        return metrics

    _timed(one_train_step, warmup)
    train_s = _timed(one_train_step, n_steps)
    eval_batch = {**batch, "mask": jnp.ones(batch["label"].shape, jnp.float32)}
    _timed(lambda: steps.eval_step(holder["state"], eval_batch), warmup)
    eval_s = _timed(lambda: steps.eval_step(holder["state"], eval_batch), n_steps)
    return holder["state"], train_s, eval_s


def _pipeline_and_loop(
    config: Any,
    state: Any,
    split: data.Split,
    mesh: Any,
    n_steps: int,
    epoch_steps: int,
    step_s: float,
) -> tuple[Any, dict[str, float]]:
    """The host pipeline alone; the training loop as ``swinjax.train`` runs it
    (swinjax.training.loop: pipeline, prefetch, metrics one step late); one validation pass; an
    epoch from those."""
    bs, sharding = config.batch_size, parallel.batch_sharding(mesh)
    steps_per_epoch = split.steps_per_epoch(bs)
    n_pipe = min(steps_per_epoch, max(n_steps * 5, 50))
    t0 = time.perf_counter()
    pipeline = data.prefetch_to_device(data.train_batches(split, bs, config.seed, 1), 2, sharding)
    with contextlib.closing(pipeline):
        jax.block_until_ready([b for _, b in zip(range(n_pipe), pipeline, strict=False)][-1])
    pipeline_s = time.perf_counter() - t0

    n_epoch = min(steps_per_epoch, epoch_steps) if epoch_steps > 0 else steps_per_epoch
    plan = loop.Plan(split, bs, config.seed, steps_per_epoch, 3, 2 * steps_per_epoch + n_epoch)
    t0 = time.perf_counter()
    with contextlib.closing(loop.device_batches(plan, loop.Position(0, 2, 0), sharding)) as b:
        state, _, _ = loop.train_epoch(state, b, loop.Meter(), step=0, stop_step=n_epoch)
    loop_s = time.perf_counter() - t0

    val_split = _val_split(config, split)
    eval_batch = config.eval_batch_size or bs
    evaluation.evaluate(state, val_split, eval_batch, mesh)  # compiles
    t0 = time.perf_counter()
    evaluation.evaluate(state, val_split, eval_batch, mesh)
    val_s = time.perf_counter() - t0
    epoch_s = loop_s / n_epoch * steps_per_epoch + val_s
    return state, {
        "pipeline_images_per_s": round(n_pipe * bs / pipeline_s, 1),
        "epoch_images_per_s": round(n_epoch * bs / loop_s, 1),
        "epoch_over_step_time": round((loop_s / n_epoch) / step_s, 3),
        "val_images_per_s": round(val_split.num_examples / val_s, 1),
        "epoch_with_validation_s": round(epoch_s, 1),
        "epoch_with_validation_over_step_time": round(epoch_s / (steps_per_epoch * step_s), 3),
    }


def _memory(device: Any) -> dict[str, float]:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    out = {}
    if stats and "peak_bytes_in_use" in stats:
        out["peak_device_memory_mib"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
    out["peak_host_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("batch_size", 0, "batch size (0: the config's)", flag_values=fv)
    flags.DEFINE_integer("steps", 20, "timed steps", flag_values=fv)
    flags.DEFINE_integer("warmup", 3, "untimed steps after compilation", flag_values=fv)
    flags.DEFINE_integer(
        "epoch_steps",
        60,
        "steps of the whole-loop measurement, from an epoch's start; 0: the whole epoch (with a "
        "streaming pipeline, its per-epoch start, the shuffle buffer filling, is in the first)",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "json", False, "print only the JSON object (as the last line)", flag_values=fv
    )
    flags.DEFINE_bool(
        "profile",
        False,
        "also trace train steps and print where the time goes (XLA op, module)",
        flag_values=fv,
    )


def main(argv: list[str]) -> int:
    """``python -m swinjax.bench`` with ``argv``; returns the exit status (see swinjax.cli)."""
    return cli.main(
        argv,
        define_flags,
        _work,
        program="swinjax.bench",
        description=__doc__,
        required=("config",),
        config="experiment config file",
    )


def _work(fv: flags.FlagValues) -> dict[str, Any]:
    result = run(fv.config, fv.batch_size, fv.steps, fv.warmup, fv.epoch_steps, fv.profile)
    if "profile" in result:
        print(profiling.format_profile(result["profile"]), end="\n\n")
    if not fv.json:
        for k, v in result.items():
            if k != "profile":
                print(f"{k:>24}: {v}")
    return result


if __name__ == "__main__":
    cli.run_program(main)
