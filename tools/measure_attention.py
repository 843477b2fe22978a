"""The attention formulations per window size: which one the ``cpu`` kernel set should use.

python tools/measure_attention.py --windows 2,3,4,5,7 --tokens 65536 --repeats 5

For each square window of ``w x w`` tokens (N = w * w) and each head layout (``--heads``: pairs
``h:d``, by default Swin's head width 32 with 3 heads and the Keras example's 8 x 8), times the
forward and backward pass (``jax.grad`` of a weighted sum of the output, jitted) of
``attention.small_window_attention`` (elementwise products, hand-written VJP),
``attention.matmul_attention`` (batched matrix products) and ``attention.dot_product_attention``
(``jax.nn.dot_product_attention``, the reference set) on ``--tokens`` tokens (Bw = tokens / N
windows) with a per-window bias of 4 windows per image, no dropout; compilation is left out and
the best of ``--repeats`` calls is kept. Prints one JSON line per (window, heads), milliseconds.

Measured on the 2-core development VM (AMD EPYC, KVM), shared with other work at the time (load
4-7 on 2 cores: noisy, compare ratios within a row), ``--tokens 65536 --repeats 5`` then
``--windows 3,4 --heads 3:32,6:16,8:8 --repeats 7``; ms, forward + backward:

==  ==  ====  =============  =============  =============
w   N   h:d   small          matmul         dot_product
==  ==  ====  =============  =============  =============
2   4   3:32  39.0           100.6          122.9
2   4   8:8   40.4           124.0          84.6
3   9   3:32  73.5 / 57.9    113.4 / 91.4   122.4 / 93.7
3   9   6:16  78.7           183.1          126.8
3   9   8:8   59.4 / 70.8    149.1 / 174.7  143.8 / 233.1
4   16  3:32  110.4 / 119.0  89.9 / 115.4   104.6 / 95.5
4   16  6:16  129.1          152.1          190.4
4   16  8:8   92.7 / 132.0   158.4 / 225.6  182.2 / 292.5
5   25  3:32  254.2          110.8          121.3
5   25  8:8   214.7          224.6          281.5
7   49  3:32  2270.8         268.1          226.0
7   49  8:8   1061.7         370.4          446.9
==  ==  ====  =============  =============  =============

Hence ``swinjax.models.layers.kernel_sets``' rule: elementwise for N <= 16 and N * d <= 288, matrix
products otherwise (the reference set's ``jax.nn.dot_product_attention`` is, on the CPU, about the
matmul formulation's speed).
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
    nW = 4
    Bw = max(nW, tokens // N // nW * nW)
    keys = jax.random.split(jax.random.key(0), 5)
    q, k, v, g = (jax.random.normal(kk, (Bw, N, h, d)) for kk in keys[:4])
    add = jax.random.normal(keys[4], (nW, N, N, h))
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
