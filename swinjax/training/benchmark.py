"""Throughput of a config's run, measured: what ``python -m swinjax.bench`` prints (its docstring
lists the figures).

:func:`measure` sets the run up as training does (:func:`swinjax.training.setup.setup_run`), then
times ``train_step`` and ``eval_step`` on one device-resident batch, the host input pipeline
alone, the training loop as training runs it, and one validation pass as training validates
(:func:`swinjax.training.evaluation.evaluate_for_config`: with the config's EMA and test-time
augmentation). Where the configured dataset is not prepared (CIFAR-100 on an offline machine), a
synthetic dataset of the same image shape and class count stands in, and the result says so.
"""

from __future__ import annotations

import contextlib
import resource
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from swinjax import data
from swinjax.config import model_overrides
from swinjax.errors import DatasetNotFoundError
from swinjax.models import create_model, flops
from swinjax.models.layers import kernel_sets
from swinjax.training import evaluation, loop, parallel, profiling, steps
from swinjax.training.setup import Run, setup_run

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
STAND_IN_TRAIN_EXAMPLES = 50_000  # CIFAR-100's training split


def measure(
    config: ml_collections.ConfigDict,
    *,
    batch_size: int = 0,
    n_steps: int = 20,
    warmup: int = 3,
    epoch_steps: int = 60,
    profile: bool = False,
) -> dict[str, Any]:
    """Every figure of ``python -m swinjax.bench``, as one JSON-able dict: ``n_steps`` timed
    steps after ``warmup`` untimed ones, the loop over ``epoch_steps`` steps of an epoch (0: all),
    and with ``profile`` where a train step's time goes (:mod:`.profiling`). ``batch_size`` > 0
    replaces the config's."""
    start = time.perf_counter()
    if batch_size:
        config.batch_size = batch_size
    run, source = _set_up(config)
    state = run.take_state()
    bs, mesh = config.batch_size, run.mesh
    batch = parallel.put_batch(next(data.train_batches(run.plan.split, bs, config.seed, 0)), mesh)

    t0 = time.perf_counter()
    compiled = steps.train_step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    step_flops, micro_flops = train_step_flops(compiled, state, batch)
    temp = getattr(compiled.memory_analysis(), "temp_size_in_bytes", None)
    state_bytes = parallel.bytes_per_device(state)
    state, _ = jax.block_until_ready(compiled(state, batch))
    first_step_s = time.perf_counter() - start

    state, train_s, eval_s = _step_times(state, batch, n_steps, warmup)
    state, result = _pipeline_and_loop(run, state, n_steps, epoch_steps, train_s / n_steps)
    device = jax.devices()[0]
    result = {
        "config": config.model,
        "batch_size": bs,
        "dtype": config.dtype,
        "kernels": kernel_sets.resolve(state.model.kernels),
        "remat": state.model.remat,
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')} x{jax.device_count()}",
        "first_step_s": round(first_step_s, 3),
        "compile_s": round(compile_s, 3),
        "train_state_bytes_per_device": state_bytes,
        "train_step_temp_bytes": temp,
        "train_images_per_s": round(n_steps * bs / train_s, 1),
        "train_ms_per_step": round(1000 * train_s / n_steps, 2),
        "eval_images_per_s": round(n_steps * bs / eval_s, 1),
        **result,
        "step_gflops": round(step_flops / 1e9, 3),
        "grad_accum_steps": int(state.grad_accum_steps),
        "microbatch_gflops": round(micro_flops / 1e9, 3),
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


def train_step_flops(compiled: Any, state: Any, batch: Any) -> tuple[float, float]:
    """``(FLOPs of the whole train step, of one microbatch's gradients)`` for ``compiled``, the
    compiled ``train_step`` of ``state`` on ``batch``.

    XLA's cost analysis counts the body of a ``lax.scan`` once, so with ``grad_accum_steps`` k > 1
    the compiled step's own count holds one microbatch's forward and backward: the microbatch's
    (:func:`steps.grads_and_metrics`, compiled on its own for this, on a batch of the
    microbatch's shape and sharding) is added k - 1 more times. With k = 1 both figures are the
    step's."""
    step = flops.xla_flops(compiled)
    k = int(state.grad_accum_steps)
    if k == 1:
        return step, step

    def microbatch(a: jax.Array) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((a.shape[0] // k, *a.shape[1:]), a.dtype, sharding=a.sharding)

    micro = jax.tree.map(microbatch, batch)
    grads = jax.jit(steps.grads_and_metrics)
    body = flops.xla_flops(grads.lower(state, state.rng, state.rng, micro).compile())
    return step + (k - 1) * body, body


def _set_up(config: ml_collections.ConfigDict) -> tuple[Run, str]:
    """The run over the config's training and validation splits, and where its data come from:
    the dataset, or a synthetic stand-in where it is not prepared."""
    try:
        splits = {"train": config.train_split}
        if config.val_split:
            splits["val"] = config.val_split
        run = setup_run(config, splits=splits)
        source = config.dataset
    except DatasetNotFoundError:
        train = _stand_in(config)
        run = setup_run(config, splits={"train": train})
        source = f"synthetic stand-in ({config.dataset} is not prepared here)"
    if "val" not in run.splits:  # the first 10% of the training split: the default split's size
        train = run.splits["train"]
        run.splits["val"] = train.head(max(1, train.num_examples // 10))
    return run, source


def _stand_in(config: ml_collections.ConfigDict) -> data.Split:
    """A synthetic training split with the configured model's image shape and classes."""
    model = create_model(config.model, **model_overrides(config))
    size = model.img_size if isinstance(model.img_size, int) else model.img_size[0]
    stand_in = config.copy_and_resolve_references()
    stand_in.dataset = data.SYNTHETIC
    stand_in.update(
        synthetic_num_classes=model.num_classes,
        synthetic_image_size=size,
        synthetic_channels=model.in_chans,
        synthetic_train_examples=STAND_IN_TRAIN_EXAMPLES,
    )
    return data.load_split(stand_in, "train")


def _peak_flops(device: Any) -> float | None:
    kind = getattr(device, "device_kind", "")
    for name, peak in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return peak
    return None


def _timed(fn: Any, n: int) -> float:
    start = time.perf_counter()
    out = None
    for _ in range(n):
        out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start


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
    run: Run, state: Any, n_steps: int, epoch_steps: int, step_s: float
) -> tuple[Any, dict[str, float]]:
    """The host pipeline alone; the training loop as training runs it (:mod:`.loop`: pipeline,
    prefetch, metrics one step late); one validation pass; an epoch from those."""
    plan, sharding = run.plan, parallel.batch_sharding(run.mesh)
    bs, steps_per_epoch = plan.batch_size, plan.steps_per_epoch
    n_pipe = min(steps_per_epoch, max(n_steps * 5, 50))
    t0 = time.perf_counter()
    pipeline = data.prefetch_to_device(
        data.train_batches(plan.split, bs, plan.seed, 1), 2, sharding
    )
    with contextlib.closing(pipeline):
        jax.block_until_ready([b for _, b in zip(range(n_pipe), pipeline, strict=False)][-1])
    pipeline_s = time.perf_counter() - t0

    n_epoch = min(steps_per_epoch, epoch_steps) if epoch_steps > 0 else steps_per_epoch
    # Epoch 2 (a fresh order) from step 0: the loop's own batches, not those timed above.
    epoch_plan = loop.Plan(
        split=plan.split,
        batch_size=bs,
        seed=plan.seed,
        steps_per_epoch=steps_per_epoch,
        num_epochs=3,
        total_steps=2 * steps_per_epoch + n_epoch,
    )
    t0 = time.perf_counter()
    with contextlib.closing(loop.device_batches(epoch_plan, loop.Position(0, 2, 0), sharding)) as b:
        state, _, _ = loop.train_epoch(state, b, loop.Meter(), step=0, stop_step=n_epoch)
    loop_s = time.perf_counter() - t0

    val_split = run.splits["val"]
    evaluation.evaluate_for_config(state, val_split, run.config, run.mesh)  # compiles
    t0 = time.perf_counter()
    evaluation.evaluate_for_config(state, val_split, run.config, run.mesh)
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
