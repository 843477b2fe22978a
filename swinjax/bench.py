"""Throughput benchmark: ``python -m swinjax.bench --config experiments/NAME.py [--json]``.

Measures, for the config's model and batch size:
- ``first_step_s``: from the start of set-up (data, model, state) to the end of the first
  ``train_step``, its compile included: what the persistent compilation cache
  (``--config.compilation_cache``, :mod:`swinjax.config.compilation_cache`) cuts on a second start;
- ``compile_s``: lowering + compiling ``train_step`` (loaded from the cache where it holds it);
- ``train_state_bytes_per_device``: the train state's bytes on one device (parameters, optimizer
  state, EMA, hparams: each array's shard there);
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
  ``train_step_temp_mib`` (``train_step_temp_bytes`` exactly; None where XLA does not say),
  XLA's buffers of ``train_step`` beyond its arguments and outputs
  (activations kept for the backward pass: what ``remat`` reduces), on any backend;
- ``step_gflops``: a train step's FLOPs by XLA's cost analysis, every microbatch counted
  (``microbatch_gflops`` one microbatch's, ``grad_accum_steps`` how many), and on an
  accelerator the model FLOPs utilisation from it;
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

from typing import Any

from absl import flags

from swinjax import cli
from swinjax.training import benchmark, profiling


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
    result = benchmark.measure(
        fv.config,
        batch_size=fv.batch_size,
        n_steps=fv.steps,
        warmup=fv.warmup,
        epoch_steps=fv.epoch_steps,
        profile=fv.profile,
    )
    if "profile" in result:
        print(profiling.format_profile(result["profile"]), end="\n\n")
    if not fv.json:
        for k, v in result.items():
            if k != "profile":
                print(f"{k:>24}: {v}")
    return result


if __name__ == "__main__":
    cli.run_program(main)
