"""The accelerator check: one command that says what swinjax does on the device it runs on.

    bash tools/accelerator_check.sh [--cpu-smoke] [--out FILE] [--budget_s S] [--only A,B] [--plan]

(the wrapper chooses the interpreter: docs/performance.md, "Accelerators (awaiting a device)").
Each step is a program of its own, run in a subprocess with its own timeout, in this order:

1. ``backend``: ``jax.devices()``, the device kind and its memory;
2. ``parity``: the numerics tests (:data:`PARITY_FILES`, :data:`PARITY_K`): logits and feature
   maps against timm's and transformers' golden fixtures, and the two kernel sets' (and remat's)
   outputs and gradients against each other, with float32 matrix products at full precision
   (``JAX_DEFAULT_MATMUL_PRECISION=float32``: on Ampere and later GPUs XLA's default for float32
   is TF32, which the tests' 1e-4 tolerances are not meant for);
3. ``train``: ``python -m swinjax.train`` for two epochs on a CIFAR-10-sized synthetic dataset
   (32x32, 10 classes, 50,000 training and 10,000 test examples);
4. ``bench``: ``python -m swinjax.bench --json``, one row per model and variant of
   :data:`FULL_MATRIX` (precision, sharding, remat, gradient accumulation, kernel set), most
   telling first.

A step that fails or runs out of time is recorded and the next one runs. The whole check keeps to
``--budget_s`` (570 s: under ten minutes with the wrapper's start): a step gets what is left of
it at most, and a step that would start with less than :data:`MIN_START_S` left is recorded as
skipped. The driver never imports JAX, so no step finds the device held by it. The last line
printed is one JSON summary, also written to ``--out``; each step's output is in the logs folder
beside it (``FILE`` without ``.json``, plus ``_logs``). Exit status 0 when every step passed.

``--cpu-smoke`` runs the same steps on the CPU at tiny sizes (``tiny_test``, 2 steps, a few
hundred synthetic images, one parity file, two host devices so that data parallelism and fsdp
split something), so that the check is known to work before it meets a device
(tests/test_accelerator_check.py). ``--plan`` prints the steps' commands as JSON and runs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from swinjax.training import writers  # noqa: E402  (standard library only: reads metrics.jsonl)

MIN_START_S = 20  # a step that would get less is skipped, not started
PARITY_FILES = (
    "tests/test_convert.py", "tests/test_features.py", "tests/test_hf_layout.py",
    "tests/test_kernel_sets.py", "tests/test_kernels.py", "tests/test_model.py"
)  # fmt: skip
# Logits, feature maps and resampled weights against timm / transformers; cpu vs reference
# kernel sets and remat vs none (outputs, gradients, dropout masks); the kernels against
# their plain formulations; bfloat16 against float32.
PARITY_K = "timm or transformers_logits or same_ or matches_ or close or threefry_bits"
SMOKE_PARITY_FILES = ("tests/test_kernels.py",)
BACKEND_PROBE = """
import json, jax
d = jax.devices()
stats = d[0].memory_stats() if hasattr(d[0], "memory_stats") else None
print(json.dumps({"jax": jax.__version__, "platform": d[0].platform,
    "device_kind": getattr(d[0], "device_kind", ""), "device_count": len(d),
    "devices": [str(x) for x in d], "memory_bytes": (stats or {}).get("bytes_limit")}))
"""
# What a bench row keeps of `python -m swinjax.bench --json` (its docstring defines them).
BENCH_FIGURES = (
    "device", "kernels", "remat", "dtype", "batch_size", "train_images_per_s", "train_ms_per_step",
    "mfu", "step_gflops", "first_step_s", "compile_s", "train_state_bytes_per_device",
    "train_step_temp_bytes", "peak_device_memory_mib", "epoch_images_per_s", "data"
)  # fmt: skip
VARIANT_DEFAULTS = {
    "dtype": "float32", "sharding": "replicated", "remat": "none", "grad_accum_steps": 1,
    "kernels": "auto"
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Model:
    """A bench model: its config file and ``--config`` overrides (synthetic data of its image
    size: enough examples for ``epoch_steps`` steps and a small validation split)."""

    config: str
    batch_size: int
    overrides: dict[str, Any]
    timeout_s: float
    steps: int = 10  # timed
    warmup: int = 2
    epoch_steps: int = 5


def synthetic(image_size: int, classes: int, train: int, test: int) -> dict[str, Any]:
    return {
        "dataset": "synthetic",
        "synthetic_image_size": image_size,
        "synthetic_num_classes": classes,
        "synthetic_train_examples": train,
        "synthetic_test_examples": test,
    }


MODELS = {
    "keras_example": Model(
        config="experiments/keras_example.py",
        batch_size=128,
        overrides=synthetic(32, 100, 10_000, 1_000),
        timeout_s=120,
        steps=20,
        warmup=3,
        epoch_steps=20,
    ),
    "swin_t_224": Model(
        config="experiments/demo.py",
        batch_size=128,
        overrides={
            "model": "swin_t",
            "model_kwargs.img_size": 224,
            **synthetic(224, 1000, 1600, 32),
        },
        timeout_s=180,
    ),
    "swin_b_384": Model(
        config="experiments/demo.py",
        batch_size=32,
        overrides={
            "model": "swin_b",
            "model_kwargs.img_size": 384,
            "model_kwargs.window_size": 12,  # timm's swin_base_patch4_window12_384
            **synthetic(384, 1000, 400, 32),
        },
        timeout_s=240,
    ),
    "tiny_test": Model(
        config="experiments/demo.py",
        batch_size=32,
        # embed_dim 32: a few arrays large enough for fsdp to split
        overrides={"model_kwargs.embed_dim": 32, **synthetic(16, 10, 320, 64)},
        timeout_s=120,
        steps=2,
        warmup=1,
        epoch_steps=2,
    ),
}
BF16 = {"dtype": "bfloat16"}
# (model, variant): the core rows first (each model in both precisions, swin_b in bfloat16),
# then the variants, the cheap ones first (on one GPU fsdp keeps every array whole: its row
# checks the path, which keras_example does the fastest).
FULL_MATRIX = (
    ("keras_example", {}),
    ("keras_example", BF16),
    ("swin_t_224", {}),
    ("swin_t_224", BF16),
    ("swin_b_384", BF16),
    ("keras_example", {**BF16, "sharding": "fsdp"}),
    ("keras_example", {**BF16, "kernels": "cpu"}),
    ("swin_t_224", {**BF16, "remat": "blocks"}),
    ("swin_t_224", {**BF16, "grad_accum_steps": 4}),
    ("swin_b_384", {**BF16, "remat": "full"}),
    ("swin_b_384", {}),
)
# Every variant at least once, in as few rows (compilations) as that takes.
SMOKE_MATRIX = (
    ("tiny_test", {}),
    ("tiny_test", BF16),
    ("tiny_test", {**BF16, "kernels": "reference", "sharding": "fsdp", "remat": "blocks"}),
    ("tiny_test", {**BF16, "grad_accum_steps": 2}),
)
# Two epochs of the Keras example's recipe on CIFAR-10-sized synthetic data.
TRAIN = {"config": "experiments/keras_example.py", **synthetic(32, 10, 50_000, 10_000)}
# The demo's training with the first smoke row's model and batch (whose compiled step it reuses).
SMOKE_TRAIN = {
    "config": MODELS["tiny_test"].config,
    **MODELS["tiny_test"].overrides,
    "batch_size": MODELS["tiny_test"].batch_size,
}
# Two host devices, so that data parallelism and fsdp split something; tiny programs compile
# faster without LLVM's optimisations (as the tests do, tests/conftest.py).
SMOKE_XLA_FLAGS = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    kind: str  # backend | parity | train | bench
    argv: tuple[str, ...]  # after the interpreter
    timeout_s: float
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    variant: dict[str, Any] = dataclasses.field(default_factory=dict)


def config_flags(overrides: dict[str, Any]) -> list[str]:
    return [f"--config.{k}={v}" for k, v in overrides.items()]


def bench_step(model_name: str, variant: dict[str, Any]) -> Step:
    """One ``python -m swinjax.bench --json`` row: ``model_name`` with ``variant``'s keys."""
    model = MODELS[model_name]
    full = {**VARIANT_DEFAULTS, **variant}
    name = ":".join([model_name, *(f"{k}={v}" for k, v in full.items())])
    argv = (
        *("-m", "swinjax.bench", "--config", model.config, "--json"),
        *(f"--batch_size={model.batch_size}", f"--steps={model.steps}"),
        *(f"--warmup={model.warmup}", f"--epoch_steps={model.epoch_steps}"),
        *config_flags({**model.overrides, **variant}),
    )
    return Step(name, "bench", argv, model.timeout_s, variant={"model": model_name, **full})


def plan(smoke: bool, logs: Path, only: tuple[str, ...] = ()) -> list[Step]:
    """The steps, in the order they run; with ``only``, the backend and the steps whose name
    holds one of its strings."""
    files = SMOKE_PARITY_FILES if smoke else PARITY_FILES
    parity_argv = ("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings")
    parity_argv += (*files, "-k", PARITY_K, f"--junitxml={logs / 'parity.xml'}")
    train = dict(SMOKE_TRAIN if smoke else TRAIN)
    train_argv = ("-m", "swinjax.train", "--config", train.pop("config"))
    train_argv += ("--workdir", str(logs / "train"), "--config.num_epochs=2")
    train_argv += ("--config.progress_bar=False", *config_flags(train))
    steps = [
        Step("backend", "backend", ("-c", BACKEND_PROBE), 60 if smoke else 120),
        Step("parity", "parity", parity_argv, 240, {"JAX_DEFAULT_MATMUL_PRECISION": "float32"}),
        Step("train", "train", train_argv, 180 if smoke else 300),
        *(bench_step(m, v) for m, v in (SMOKE_MATRIX if smoke else FULL_MATRIX)),
    ]
    if smoke:  # the parity tests set their own (tests/conftest.py)
        xla = {"XLA_FLAGS": _with_flags(os.environ.get("XLA_FLAGS", ""), SMOKE_XLA_FLAGS)}
        steps = [s if s.kind == "parity" else dataclasses.replace(s, env=xla) for s in steps]
    return [s for s in steps if not only or s.kind == "backend" or any(o in s.name for o in only)]


def _with_flags(flags: str, more: str) -> str:
    """``flags`` plus those of ``more`` it does not set already."""
    names = {f.split("=")[0] for f in flags.split()}
    return " ".join([*flags.split(), *(f for f in more.split() if f.split("=")[0] not in names)])


def run_step(step: Step, logs: Path, deadline: float) -> tuple[dict[str, Any], str]:
    """Runs ``step`` (at most its timeout, and never past ``deadline``); its record (ok, status,
    wall_s, log) and its standard output. The output and errors go to ``logs/NAME.log``."""
    log = logs / f"{step.name.replace(':', '_')}.log"
    record: dict[str, Any] = {"ok": False, "log": str(log)}
    timeout = min(step.timeout_s, deadline - time.monotonic())
    if timeout < MIN_START_S:
        return {**record, "status": "skipped: the check's time budget is spent"}, ""
    env = {**os.environ, "PYTHONPATH": _pythonpath(), **step.env}
    start = time.monotonic()
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, *step.argv],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,  # its own process group: a timeout ends all of it
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
            status = "ok" if proc.returncode == 0 else f"failed: exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            status = f"timed out after {timeout:.0f} s"
    with open(log, "a") as f:
        f.write(f"\n---- standard output\n{out}")
    record.update(ok=status == "ok", status=status, wall_s=round(time.monotonic() - start, 1))
    if not record["ok"]:
        record["error_tail"] = log.read_text().splitlines()[-8:]
    return record, out


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)


def last_json(out: str) -> dict[str, Any]:
    """The JSON object a program prints as its last line (swinjax.cli)."""
    lines = [line for line in out.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}


def parity_counts(xml_path: Path) -> dict[str, Any]:
    """Passed, failed and skipped tests per file, and the failures' names, from pytest's JUnit
    XML."""
    by_file: dict[str, dict[str, int]] = {}
    failures = []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        file = case.get("classname", "").replace(".", "/") + ".py"
        outcome = "passed"
        for child, label in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            if case.find(child) is not None:
                outcome = label
        counts = by_file.setdefault(file, {"passed": 0, "failed": 0, "skipped": 0})
        counts[outcome] += 1
        if outcome == "failed":
            failures.append(f"{file}::{case.get('name')}")
    totals = {k: sum(c[k] for c in by_file.values()) for k in ("passed", "failed", "skipped")}
    return {**totals, "by_file": by_file, "failures": failures}


def describe(step: Step, record: dict[str, Any], out: str, logs: Path) -> dict[str, Any]:
    """The step's record with what its program reported."""
    try:
        if step.kind == "backend" and record["ok"]:
            record.update(last_json(out))
        elif step.kind == "parity":
            record["matmul_precision"] = step.env["JAX_DEFAULT_MATMUL_PRECISION"]
            if (logs / "parity.xml").exists():
                record.update(parity_counts(logs / "parity.xml"))
                record["ok"] = record["ok"] and record["passed"] > 0
        elif step.kind == "train" and record["ok"]:
            epochs = writers.read_records(logs / "train", "epoch")
            record.update(result=last_json(out), final_epoch=epochs[-1] if epochs else None)
        elif step.kind == "bench":
            record = {"name": step.name, **step.variant, **record}
            if record["ok"]:
                figures = last_json(out)
                record.update({k: figures.get(k) for k in BENCH_FIGURES})
    except (ValueError, KeyError, IndexError, ET.ParseError) as e:
        record.update(ok=False, status=f"output not understood: {e!r}")
    return record


def fastest(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model, the row with the most training images/s, with its kernel set (as resolved),
    precision, sharding, remat and accumulation."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["ok"] and row["train_images_per_s"] is not None:
            held = best.get(row["model"])
            if held is None or row["train_images_per_s"] > held["train_images_per_s"]:
                best[row["model"]] = row
    keys = ("name", "train_images_per_s", "mfu", *VARIANT_DEFAULTS)
    return {m: {k: r.get(k) for k in keys} for m, r in best.items()}


def check(smoke: bool, out_path: Path, budget_s: float, only: tuple[str, ...]) -> dict[str, Any]:
    """Runs every step of :func:`plan`; the summary."""
    start, started = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    logs = out_path.parent / f"{out_path.stem}_logs"
    _clear(logs)
    summary: dict[str, Any] = {"mode": "cpu-smoke" if smoke else "accelerator"}
    summary.update(started=started, budget_s=budget_s, commit=_commit(), only=only, bench=[])
    steps, passed = plan(smoke, logs, only), 0
    for step in steps:
        print(f"[accelerator_check] {step.name} ...", file=sys.stderr, flush=True)
        record, out = run_step(step, logs, start + budget_s)
        record = describe(step, record, out, logs)
        print(f"[accelerator_check] {step.name}: {record['status']}", file=sys.stderr, flush=True)
        passed += record["ok"]
        if step.kind == "bench":
            summary["bench"].append(record)
        else:
            summary[step.kind] = record
        if step.kind == "backend" and not smoke and record.get("platform") == "cpu":
            summary["error"] = (
                "JAX sees only the CPU: install jax for the device (.venv/bin/pip install -e "
                "'.[cuda]' on NVIDIA GPUs) or point PYTHON at such an interpreter; "
                "--cpu-smoke checks the script on the CPU"
            )
            print(f"[accelerator_check] {summary['error']}", file=sys.stderr, flush=True)
            break
    summary["fastest"] = fastest(summary["bench"])
    summary["ok"] = "error" not in summary and passed == len(steps)
    summary["wall_s"] = round(time.monotonic() - start, 1)
    return summary


def _clear(logs: Path) -> None:
    """A fresh logs folder (a training workdir left there would be resumed, not trained)."""
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes, on the CPU")
    parser.add_argument("--out", default="workdirs/accelerator_check.json", help="summary file")
    parser.add_argument("--budget_s", type=float, default=570.0, help="the whole check's limit")
    parser.add_argument(
        "--only", default="", help="comma-separated parts of step names: those steps only"
    )
    parser.add_argument("--plan", action="store_true", help="print the steps, run nothing")
    args = parser.parse_args(argv)
    out, only = Path(args.out).resolve(), tuple(o for o in args.only.split(",") if o)
    if args.plan:
        steps = plan(args.cpu_smoke, out.parent / f"{out.stem}_logs", only)
        print(json.dumps([dataclasses.asdict(s) for s in steps], indent=1))
        return 0
    summary = check(args.cpu_smoke, out, args.budget_s, only)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
