"""The attention formulations per window size: which one the ``cpu`` kernel set should use.

python tools/measure_attention.py --windows 2,3,4,5,7 --tokens 65536 --repeats 5

For each square window of side ``s`` (N = s * s tokens; ``--windows`` lists the sides) and each
head layout (``--heads``: pairs
``h:d``, by default Swin's head width 32 with 3 heads and the Keras example's 8 x 8), times the
forward and backward pass (``jax.grad`` of a weighted sum of the output, jitted) of
``attention.small_window_attention`` (elementwise products, hand-written VJP),
``attention.matmul_attention`` (batched matrix products) and ``attention.dot_product_attention``
(``jax.nn.dot_product_attention``, the reference set) on ``--tokens`` tokens (Bw = tokens / N
windows) with a per-window bias of 4 windows per image, no dropout; compilation is left out and
the best of ``--repeats`` calls is kept. Prints one JSON line per (window, heads), milliseconds.

What it measured, and the thresholds of ``swinjax.models.layers.kernel_sets`` that follow from
it (elementwise for N <= 16 and N * d <= 288, matrix products otherwise), are in
docs/performance.md ("Attention per window size").
"""

from __future__ import annotations

if __name__ == "__main__":  # the programs' XLA flag, before JAX is imported (swinjax.runtime)
    from swinjax import runtime

    runtime.configure(restart=False)

import argparse
import json
import time

import jax
import jax.numpy as jnp

from swinjax.models.layers import attention

FORMULATIONS = {
    "small": attention.small_window_attention,
    "matmul": attention.matmul_attention,
    "dot_product": attention.dot_product_attention,
}


def _inputs(tokens: int, N: int, h: int, d: int) -> tuple[jax.Array, ...]:
    num_windows = 4
    Bw = max(num_windows, tokens // N // num_windows * num_windows)
    keys = jax.random.split(jax.random.key(0), 5)
    q, k, v, g = (jax.random.normal(kk, (Bw, N, h, d)) for kk in keys[:4])
    add = jax.random.normal(keys[4], (num_windows, N, N, h))
    return q, k, v, add, g


def _best_ms(fn, args: tuple, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compiles
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


def measure(window: int, h: int, d: int, tokens: int, repeats: int) -> dict:
    q, k, v, add, g = _inputs(tokens, window * window, h, d)
    row = {"window": window, "N": window * window, "heads": h, "head_dim": d}
    for name, attend in FORMULATIONS.items():

        def loss(q, k, v, add, attend=attend):
            return jnp.sum(attend(q, k, v, add) * g)

        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
        row[f"{name}_ms"] = round(_best_ms(grad, (q, k, v, add), repeats), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", default="2,3,4,5,7")
    parser.add_argument("--heads", default="3:32,8:8", help="h:d pairs, by commas")
    parser.add_argument("--tokens", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for window in (int(w) for w in args.windows.split(",")):
        for pair in args.heads.split(","):
            h, d = (int(v) for v in pair.split(":"))
            print(json.dumps(measure(window, h, d, args.tokens, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
