"""Population training against sequential runs: K models in one vmapped step, or one by one.

python tools/measure_population.py --model keras_example --k 4 --steps 30

Both sides train the same K states (learning rates 1e-3 * 2**i) on the same synthetic batches
(CIFAR-sized by default: 32x32x3, 100 classes, batch 128). Sequential: ``steps.train_step``
runs ``--steps`` steps of member 0, then of member 1, ...; population: ``steps.train_step`` on
the stacked state runs ``--steps`` steps of all K at once. Compilation is timed separately (one
warm-up step each), then the best of ``--repeats`` timings of the steady state is kept. Prints
one JSON object.
"""

from __future__ import annotations

if __name__ == "__main__":  # the programs' XLA flag, before JAX is imported (swinjax.runtime)
    from swinjax import runtime

    runtime.configure(restart=False)

import argparse
import json
import os
import platform
import time

import jax

from swinjax import data
from swinjax.config import base_config, build_model
from swinjax.training import population, steps
from swinjax.training import state as state_lib


def _states(args: argparse.Namespace) -> tuple[list[state_lib.TrainState], data.Split]:
    config = base_config()
    config.update(
        model=args.model,
        dataset="synthetic",
        synthetic_image_size=args.image_size,
        synthetic_num_classes=args.num_classes,
        synthetic_train_examples=args.batch_size * 4,
        batch_size=args.batch_size,
        augment=args.augment,
    )
    split = data.load_split(config, "train")
    model = build_model(config, split)
    states = []
    for i in range(args.k):
        config.learning_rate, config.seed = 1e-3 * 2**i, i
        states.append(state_lib.create_train_state(config, model, steps_per_epoch=4))
    return states, split


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="keras_example")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--augment", default="crop_flip")
    args = parser.parse_args()

    states, split = _states(args)
    batches = [jax.device_put(b) for b in data.train_batches(split, args.batch_size, 0, 0)]
    pop = population.stack(states)

    t0 = time.perf_counter()
    states[0], m = steps.train_step(states[0], batches[0])
    jax.block_until_ready(m)
    compile_sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    pop, m = steps.train_step(pop, batches[0])
    jax.block_until_ready(m)
    compile_population = time.perf_counter() - t0

    def sequential() -> None:
        for i in range(args.k):
            for s in range(args.steps):
                states[i], metrics = steps.train_step(states[i], batches[s % len(batches)])
            jax.block_until_ready(metrics)

    def together() -> None:
        nonlocal pop
        for s in range(args.steps):
            pop, metrics = steps.train_step(pop, batches[s % len(batches)])
        jax.block_until_ready(metrics)

    seq_s = _time(sequential, args.repeats)
    pop_s = _time(together, args.repeats)
    images = args.k * args.steps * args.batch_size
    print(
        json.dumps(
            {
                "model": args.model,
                "k": args.k,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "sequential_s": round(seq_s, 3),
                "population_s": round(pop_s, 3),
                "speedup": round(seq_s / pop_s, 3),
                "sequential_img_s": round(images / seq_s, 1),
                "population_img_s": round(images / pop_s, 1),
                "compile_sequential_s": round(compile_sequential, 2),
                "compile_population_s": round(compile_population, 2),
                "cpus": len(os.sched_getaffinity(0)),
                "machine": platform.processor() or platform.machine(),
                "jax": jax.__version__,
                "backend": jax.default_backend(),
            }
        )
    )


if __name__ == "__main__":
    main()
