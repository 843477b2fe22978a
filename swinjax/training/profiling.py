"""Where a jitted step's time goes: XLA ops and model modules, from the JAX profiler.

``python -m swinjax.bench --config ... --profile`` traces a few steps with ``jax.profiler``,
reads the Perfetto trace it writes, and matches each XLA op (a fusion, a matrix product) to the
compiled HLO, whose metadata names the JAX operation and the Flax module path it came from
(``layers_0/blocks_1/mlp/fc1``) and whether it belongs to the forward or the backward pass.

The per-op events are those of XLA's CPU runtime; on other backends the trace names kernels
rather than HLO ops, and what cannot be matched is reported as ``unmatched``.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import re
import tempfile
from collections.abc import Callable
from typing import Any

import jax

_MODULE_PART = re.compile(
    r"(layers_\d+|blocks_\d+|attn|mlp|fc\d|qkv|proj|norm\d?|patch_embed|downsample|head|"
    r"Dropout_\d+|DropPath_\d+|reduction)$"
)


def _op_metadata(hlo_text: str) -> dict[str, tuple[str, str]]:
    """HLO instruction name -> (its text, the JAX op_name in its metadata)."""
    out: dict[str, tuple[str, str]] = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = (.*)", line)
        if m and m.group(1) not in out:
            op = re.search(r'op_name="([^"]*)"', line)
            out[m.group(1)] = (re.sub(r", metadata=.*", "", m.group(2)), op.group(1) if op else "")
    return out


def _module_of(op_name: str) -> tuple[str, str]:
    """('fwd' | 'bwd' | 'step', 'layers_0/blocks_1/mlp/fc1') from a JAX op_name."""
    phase = "bwd" if "transpose(" in op_name else "fwd" if "jvp(" in op_name else "step"
    parts = re.sub(r"[a-z_]+\(|\)", "", op_name).split("/")
    module = "/".join(p for p in parts if _MODULE_PART.match(p))
    return phase, module or "(optimizer, loss, metrics, input)"


def profile_step(
    step: Callable[..., Any], compiled_text: str, args: tuple, n_steps: int = 3
) -> dict[str, Any]:
    """Runs ``step(*args)`` ``n_steps`` times under the profiler (``args[0]`` is replaced by the
    first output each time, as a train state is); returns the time per step by op and module.
    """
    meta = _op_metadata(compiled_text)
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            out = None
            for _ in range(n_steps):
                out = step(*args)
                args = (out[0], *args[1:]) if isinstance(out, tuple) else args
            jax.block_until_ready(out)
        traces = glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)
        if not traces:
            raise RuntimeError("the profiler wrote no Perfetto trace")
        with gzip.open(traces[0]) as f:
            events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]

    per_op: collections.Counter[str] = collections.Counter()
    for e in events:
        per_op[e["name"]] += e["dur"]
    by_module: collections.Counter[tuple[str, str]] = collections.Counter()
    by_kind: collections.Counter[str] = collections.Counter()
    matched = 0.0
    for name, us in per_op.items():
        if name not in meta:
            continue
        matched += us
        by_module[_module_of(meta[name][1])] += us
        by_kind[re.sub(r"[._]\d+$", "", name)] += us

    def ms(us: float) -> float:
        return round(us / n_steps / 1000, 2)

    top = [
        {"op": n, "ms": ms(us), "module": "/".join(_module_of(meta[n][1])), "hlo": meta[n][0][:160]}
        for n, us in per_op.most_common()
        if n in meta
    ]
    return {
        "ops_ms_per_step": ms(matched),
        "by_module": [
            {"phase": p, "module": m, "ms": ms(us)} for (p, m), us in by_module.most_common()
        ],
        "by_kind": [{"kind": k, "ms": ms(us)} for k, us in by_kind.most_common()],
        "top_ops": top[:25],
    }


def format_profile(profile: dict[str, Any], rows: int = 25) -> str:
    lines = [f"XLA ops: {profile['ops_ms_per_step']} ms per step", "", "by module:"]
    lines += [f"{r['ms']:9.2f} ms  {r['phase']:4s} {r['module']}" for r in profile["by_module"]]
    lines += ["", "by op kind:"]
    lines += [f"{r['ms']:9.2f} ms  {r['kind']}" for r in profile["by_kind"][:rows]]
    lines += ["", "top ops:"]
    lines += [f"{r['ms']:9.2f} ms  {r['module']:40s} {r['hlo']}" for r in profile["top_ops"][:rows]]
    return "\n".join(lines)
