"""FLOPs by PyTorch's rule: the matrix products and convolutions of a traced program, each
2 x M x N x K (``torch.utils.flop_counter.FlopCounterMode``'s count: elementwise ops, softmax,
normalisation and gathers count nothing), so that a swinjax model's count can equal timm's.

    flops = matmul_flops(lambda p, x: model.apply({"params": p}, x), params, x_BHWC)

The program is traced (``jax.make_jaxpr``, abstract inputs are enough), never compiled; nested
programs (``jit``, custom derivatives, remat, ``scan`` times its length, the costliest branch of
a ``cond``) are walked into. XLA's cost analysis (``presets.forward_gflops``) counts every
elementwise op too, so it is higher.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
from jax.extend import core as jex_core


def xla_flops(program: Any) -> float:
    """FLOPs of a lowered or compiled program by XLA's cost analysis (every op, elementwise ones
    included; 0 where the backend gives none)."""
    cost = program.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def matmul_flops(fn: Callable[..., Any], *args: Any) -> int:
    """The FLOPs of ``fn(*args)``'s ``dot_general`` and ``conv_general_dilated`` ops."""
    return _count(jax.make_jaxpr(fn)(*args).jaxpr)


def _count(jaxpr: Any) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "while":
            if any(_count(j) for j in _subjaxprs(eqn.params)):
                raise ValueError("a while loop with matrix products: its trip count is unknown")
        elif name == "cond":
            total += max(_count(j) for j in _subjaxprs(eqn.params))
        else:
            inner = sum(_count(j) for j in _subjaxprs(eqn.params))
            total += inner * (eqn.params["length"] if name == "scan" else 1)
    return total


def _subjaxprs(params: dict[str, Any]) -> Iterator[Any]:
    """The programs among an equation's parameters (a ``jit``'s body, a ``cond``'s branches)."""
    for value in params.values():
        for v in value if isinstance(value, tuple | list) else (value,):
            if isinstance(v, jex_core.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, jex_core.Jaxpr):
                yield v


def _dot_flops(eqn: Any) -> int:
    """2 x (output elements) x (contracted size)."""
    (contract_lhs, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape
    return 2 * math.prod(out) * math.prod(lhs[d] for d in contract_lhs)


def _conv_flops(eqn: Any) -> int:
    """2 x (output elements) x (kernel elements per output channel)."""
    rhs = eqn.invars[1].aval.shape
    out_channels = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
    return 2 * math.prod(eqn.outvars[0].aval.shape) * (math.prod(rhs) // out_channels)
