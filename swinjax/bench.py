"""Throughput benchmark: ``python -m swinjax.bench --config experiments/NAME.py [--json]``.

Measures, for the config's model and batch size:
- ``compile_s``: lowering + compiling ``train_step``;
- ``train_images_per_s``: steady-state ``train_step`` on a device-resident batch (after warm-up,
  synchronised at the end of the timed window);
- ``eval_images_per_s``: ``eval_step`` likewise;
- ``pipeline_images_per_s``: the host input pipeline alone (epoch order, batch gather, transfer);
- ``epoch_images_per_s``: the training loop as ``train.py`` runs it (pipeline, prefetch, metrics
  fetched one step late) over ``--epoch_steps`` steps, and its ratio to the pure step time;
- ``epoch_with_validation_s``: a whole epoch, that loop's time per step times the epoch's steps
  plus one measured pass over the validation split, and its ratio to the pure step time;
- peak memory, and on an accelerator the model FLOPs utilisation from XLA's cost analysis;
- with ``--profile``, where a train step's time goes, by XLA op and by model module
  (:mod:`swinjax.profile`).

The input pipeline reads the configured dataset; where it is not prepared (CIFAR-100 on an offline
machine), a synthetic dataset of the same image shape and class count stands in, and the output
says so. With ``--json`` the last line printed is one JSON object.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags, logging
from ml_collections import config_flags

from swinjax import data, evaluation, parallel, runtime, steps
from swinjax import profile as profiling
from swinjax.config import build_model, validate_config

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Command-line flags, defined only when run as a program (modules stay importable together)."""
    config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
    flags.DEFINE_integer("batch_size", 0, "batch size (0: the config's)")
    flags.DEFINE_integer("steps", 20, "timed steps")
    flags.DEFINE_integer("warmup", 3, "untimed steps after compilation")
    flags.DEFINE_integer("epoch_steps", 60, "steps of the full-loop measurement")
    flags.DEFINE_bool("json", False, "print one JSON object as the last line")
    flags.DEFINE_bool(
        "profile", False, "also trace train steps and print where the time goes (XLA op, module)"
    )


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
        return data.load_split(config, config.train_split), config.dataset
    except data.DatasetNotFoundError:
        from swinjax.model import create_model

        model = create_model(config.model, **dict(config.model_kwargs))
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
        return data.load_split(config, config.val_split)
    n = max(1, train.num_examples // 10)
    return data.Split(train.images[:n], train.labels[:n], f"{train.name}[:{n}]", train.num_classes)


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
    if batch_size:
        config.batch_size = batch_size
    validate_config(config)
    bs = config.batch_size
    split, source = _train_split(config)
    model = build_model(config, split)
    mesh = parallel.make_mesh()  # data parallel over every device, as train.py runs
    parallel.check_batch_size(bs, mesh.size)
    state = steps.create_train_state(
        config, model, steps_per_epoch=max(1, split.num_examples // bs)
    )
    state = parallel.replicate(state, mesh)
    batch = parallel.put_batch(next(data.train_batches(split, bs, config.seed, 0)), mesh)
    sharding = parallel.batch_sharding(mesh)

    t0 = time.perf_counter()
    compiled = steps.train_step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    step_flops = float(cost.get("flops", 0.0)) if cost else 0.0

    holder = {"state": state}

    def one_train_step():
        holder["state"], metrics = steps.train_step(holder["state"], batch)
        return metrics

    _timed(one_train_step, warmup)
    train_s = _timed(one_train_step, n_steps)
    eval_batch = {**batch, "mask": jnp.ones((bs,), jnp.float32)}
    _timed(lambda: steps.eval_step(holder["state"], eval_batch), warmup)
    eval_s = _timed(lambda: steps.eval_step(holder["state"], eval_batch), n_steps)

    # The host pipeline alone: order, gather, transfer.
    n_pipe = min(data.steps_per_epoch(split.num_examples, bs), max(n_steps * 5, 50))
    t0 = time.perf_counter()
    last = None
    pipeline = data.prefetch_to_device(data.train_batches(split, bs, config.seed, 1), 2, sharding)
    for i, b in enumerate(pipeline):
        last = b
        if i + 1 >= n_pipe:
            break
    jax.block_until_ready(last)
    pipeline_s = time.perf_counter() - t0

    # The loop as train.py runs it: pipeline + prefetch + step + one-step-late metric fetch.
    n_epoch = min(data.steps_per_epoch(split.num_examples, bs), epoch_steps)
    state = holder["state"]
    pending = None
    t0 = time.perf_counter()
    loop = data.prefetch_to_device(data.train_batches(split, bs, config.seed, 2), 2, sharding)
    for i, b in enumerate(loop):
        state, metrics = steps.train_step(state, b)
        if pending is not None:
            steps.check_finite(jax.device_get(pending), i)
        pending = metrics
        if i + 1 >= n_epoch:
            break
    jax.device_get(pending)
    loop_s = time.perf_counter() - t0

    # Validation as train.py runs it after each epoch (compiled here, timed on a second pass).
    val_split = _val_split(config, split)
    evaluation.evaluate(state, val_split, bs, mesh)
    t0 = time.perf_counter()
    evaluation.evaluate(state, val_split, bs, mesh)
    val_s = time.perf_counter() - t0
    steps_per_epoch = data.steps_per_epoch(split.num_examples, bs)
    step_s = train_s / n_steps
    epoch_s = loop_s / n_epoch * steps_per_epoch + val_s

    device = jax.devices()[0]
    train_ips = n_steps * bs / train_s
    result: dict[str, Any] = {
        "config": config.model,
        "batch_size": bs,
        "dtype": config.dtype,
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')} x{jax.device_count()}",
        "compile_s": round(compile_s, 3),
        "train_images_per_s": round(train_ips, 1),
        "train_ms_per_step": round(1000 * train_s / n_steps, 2),
        "eval_images_per_s": round(n_steps * bs / eval_s, 1),
        "pipeline_images_per_s": round(n_pipe * bs / pipeline_s, 1),
        "epoch_images_per_s": round(n_epoch * bs / loop_s, 1),
        "epoch_over_step_time": round((loop_s / n_epoch) / step_s, 3),
        "val_images_per_s": round(val_split.num_examples / val_s, 1),
        "epoch_with_validation_s": round(epoch_s, 1),
        "epoch_with_validation_over_step_time": round(epoch_s / (steps_per_epoch * step_s), 3),
        "step_gflops": round(step_flops / 1e9, 3),
        "data": source,
    }
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        result["peak_device_memory_mib"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
    result["peak_host_rss_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    peak = _peak_flops(device)
    if peak and step_flops:
        result["mfu"] = round(step_flops * n_steps / train_s / jax.device_count() / peak, 4)
    if profile:
        result["profile"] = profiling.profile_step(
            steps.train_step, compiled.as_text(), (state, batch)
        )
    return result


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.config is None:
        raise app.UsageError("--config is required")
    logging.set_verbosity(logging.WARNING)
    try:
        result = run(
            FLAGS.config,
            FLAGS.batch_size,
            FLAGS.steps,
            FLAGS.warmup,
            FLAGS.epoch_steps,
            FLAGS.profile,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if "profile" in result:
        print(profiling.format_profile(result["profile"]), end="\n\n")
    if not FLAGS.json:
        for k, v in result.items():
            if k != "profile":
                print(f"{k:>24}: {v}")
    print(json.dumps(result) if FLAGS.json else "", flush=True)


if __name__ == "__main__":
    runtime.reexec_with_hugepages()
    define_flags()
    app.run(main)
