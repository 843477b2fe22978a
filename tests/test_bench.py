"""The benchmark runs end to end on a tiny config and reports every figure (no timing asserts)."""

from __future__ import annotations

import pytest

from swinjax.training import benchmark, profiling
from tests.conftest import make_tiny_config


@pytest.mark.slow
def test_bench_reports_all_figures() -> None:
    result = benchmark.measure(
        make_tiny_config(), batch_size=32, n_steps=2, warmup=1, epoch_steps=3
    )
    for key in (
        "train_images_per_s",
        "eval_images_per_s",
        "pipeline_images_per_s",
        "epoch_images_per_s",
        "compile_s",
        "step_gflops",
        "val_images_per_s",
        "epoch_with_validation_s",
        "epoch_with_validation_over_step_time",
        "train_step_temp_mib",
        "peak_host_rss_mib",
    ):
        assert result[key] > 0, key
    assert result["device"].startswith("cpu") and result["batch_size"] == 32
    assert (result["kernels"], result["remat"]) == ("cpu", "none")  # auto, resolved on the CPU


@pytest.mark.slow
def test_bench_stands_in_synthetic_data_for_a_missing_dataset(tmp_path) -> None:
    config = make_tiny_config(dataset="cifar100", data_dir=str(tmp_path), remat="full")
    result = benchmark.measure(config, batch_size=32, n_steps=1, warmup=1, epoch_steps=2)
    assert "synthetic stand-in (cifar100 is not prepared here)" == result["data"]
    assert result["remat"] == "full" and result["train_step_temp_mib"] > 0
    assert result["train_images_per_s"] > 0


def test_bench_profile_attributes_time_to_modules() -> None:
    result = benchmark.measure(
        make_tiny_config(), batch_size=32, n_steps=1, warmup=1, epoch_steps=2, profile=True
    )
    prof = result["profile"]
    assert prof["ops_ms_per_step"] > 0
    modules = {(r["phase"], r["module"]) for r in prof["by_module"]}
    # The tiny model's MLPs and attention appear, in both passes.
    assert any(p == "fwd" and "mlp" in m for p, m in modules), modules
    assert any(p == "bwd" and "attn" in m for p, m in modules), modules
    assert abs(sum(r["ms"] for r in prof["by_module"]) - prof["ops_ms_per_step"]) < 0.1 * len(
        modules
    )
    assert "mlp" in profiling.format_profile(prof)
