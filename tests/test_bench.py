"""The benchmark runs end to end on a tiny config and reports every figure (no timing asserts);
its FLOPs count every microbatch of an accumulated step."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.models import create_model, flops
from swinjax.training import benchmark, profiling, steps
from swinjax.training import state as state_lib
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
        "microbatch_gflops",
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


def _step_flops(k: int) -> tuple[float, float, float]:
    """(the whole step's FLOPs, one microbatch's, XLA's own count of the compiled step) for
    ``grad_accum_steps=k`` on one batch of 16."""
    state = state_lib.create_train_state(
        make_tiny_config(grad_accum_steps=k),
        create_model("tiny_test", kernels="cpu"),
        steps_per_epoch=4,
    )
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)),
        "label": jnp.asarray(rng.integers(0, 10, 16)),
    }
    compiled = steps.train_step.lower(state, batch).compile()
    return (*benchmark.train_step_flops(compiled, state, batch), flops.xla_flops(compiled))


def test_step_flops_count_every_microbatch() -> None:
    step_1, micro_1, xla_1 = _step_flops(1)
    step_2, micro_2, xla_2 = _step_flops(2)
    assert step_1 == micro_1 == xla_1 > 0  # no accumulation: the step is one microbatch
    assert xla_2 < 0.7 * step_2  # XLA counts the scan's body once ...
    assert step_2 == pytest.approx(2 * micro_2, rel=0.05)  # ... the figure counts both
    assert step_2 == pytest.approx(step_1, rel=0.05)  # the same work as one batch of 16
