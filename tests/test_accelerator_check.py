"""tools/accelerator_check.sh: its ``--cpu-smoke`` runs every step end to end on the CPU and writes
the summary a device run would (slow tier); the full plan covers what the check promises."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "tools" / "accelerator_check.sh"
_SPEC = importlib.util.spec_from_file_location("accelerator_check", SCRIPT.with_suffix(".py"))
check = sys.modules.setdefault("accelerator_check", importlib.util.module_from_spec(_SPEC))
_SPEC.loader.exec_module(check)  # the driver (tools/ is no package)


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)  # this interpreter, not a fresh .venv
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_full_plan_covers_models_precisions_and_variants(tmp_path) -> None:
    proc = _run("--plan", "--out", str(tmp_path / "s.json"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout)
    assert [s["kind"] for s in steps[:3]] == ["backend", "parity", "train"]
    rows = [s["variant"] for s in steps if s["kind"] == "bench"]
    assert {r["model"] for r in rows} == {"keras_example", "swin_t_224", "swin_b_384"}
    for model in ("keras_example", "swin_t_224", "swin_b_384"):
        assert {r["dtype"] for r in rows if r["model"] == model} == {"float32", "bfloat16"}
    for key, value in [("sharding", "fsdp"), ("remat", "blocks"), ("remat", "full")]:
        assert any(r[key] == value for r in rows), (key, value)
    assert any(r["grad_accum_steps"] > 1 for r in rows)
    assert any(r["kernels"] != "auto" for r in rows)
    train = " ".join(steps[2]["argv"])
    for flag in ("num_epochs=2", "image_size=32", "num_classes=10", "train_examples=50000"):
        assert flag in train, flag
    assert steps[1]["env"] == {"JAX_DEFAULT_MATMUL_PRECISION": "float32"}


def test_a_failing_or_hanging_step_is_recorded_and_the_budget_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(check, "MIN_START_S", 0.5)
    far = time.monotonic() + 60
    failing = check.Step("fails", "bench", ("-c", "import sys; sys.exit('no device here')"), 30)
    record, _ = check.run_step(failing, tmp_path, far)
    assert record["status"] == "failed: exit status 1" and not record["ok"]
    assert "no device here" in record["error_tail"]
    hanging = check.Step("hangs", "bench", ("-c", "import time; time.sleep(60)"), 1)
    start = time.monotonic()
    record, _ = check.run_step(hanging, tmp_path, far)
    assert record["status"] == "timed out after 1 s" and time.monotonic() - start < 10
    record, _ = check.run_step(failing, tmp_path, time.monotonic() + 0.1)  # no time left
    assert record["status"].startswith("skipped") and not record["ok"]


def test_without_an_accelerator_the_check_stops_after_the_backend(tmp_path) -> None:
    out = tmp_path / "summary.json"
    proc = _run("--out", str(out), timeout=120)
    summary = json.loads(out.read_text())
    assert proc.returncode == 1 and not summary["ok"]
    assert summary["backend"]["ok"] and summary["backend"]["platform"] == "cpu"
    assert "JAX sees only the CPU" in summary["error"] and "[cuda]" in summary["error"]
    assert "parity" not in summary and summary["bench"] == []


@pytest.mark.slow
def test_cpu_smoke_runs_every_step(tmp_path) -> None:
    out = tmp_path / "summary.json"
    proc = _run("--cpu-smoke", "--out", str(out), timeout=600)
    summary = json.loads(out.read_text())
    assert json.loads(proc.stdout.splitlines()[-1]) == summary
    assert proc.returncode == 0 and summary["ok"], json.dumps(summary, indent=1)
    assert summary["mode"] == "cpu-smoke"
    assert summary["backend"]["platform"] == "cpu" and summary["backend"]["device_count"] == 2
    parity = summary["parity"]
    assert parity["ok"] and parity["passed"] > 0 and parity["failed"] == 0
    assert summary["train"]["result"]["epoch"] == 2
    assert summary["train"]["final_epoch"]["epoch"] == 2
    assert summary["train"]["wall_s"] > 0
    rows = summary["bench"]
    assert len(rows) >= 4 and all(r["ok"] for r in rows)
    for row in rows:
        assert row["train_images_per_s"] > 0 and row["first_step_s"] > 0, row["name"]
        assert row["train_state_bytes_per_device"] > 0 and row["train_step_temp_bytes"] > 0
    assert {r["kernels"] for r in rows} == {"cpu", "reference"}  # auto resolved, and chosen
    by_sharding = {r["sharding"]: r for r in rows if r["dtype"] == "bfloat16"}
    fsdp, replicated = by_sharding["fsdp"], by_sharding["replicated"]  # over two host devices
    assert fsdp["train_state_bytes_per_device"] < replicated["train_state_bytes_per_device"]
    fastest = summary["fastest"]["tiny_test"]
    assert fastest["train_images_per_s"] == max(r["train_images_per_s"] for r in rows)
