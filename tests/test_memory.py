"""The memory arithmetic (``swinjax.training.memory``): exact state bytes against real parameter
counts and a real train state, the rules (fsdp divides, remat and accumulation shrink), the
activation estimate against XLA's compiled temporary bytes on tiny models, and bad inputs."""

from __future__ import annotations

import jax
import pytest

from swinjax.errors import ConfigError
from swinjax.models import create_model
from swinjax.models.presets import count_params, param_shapes
from swinjax.training import memory, memory_calibration, parallel
from swinjax.training.state import create_train_state
from tests.conftest import make_tiny_config

# The activation estimate may be off by this factor either way against XLA:CPU's temporary bytes
# (remat none) and against the residuals JAX saves (every remat): docs/performance.md, "Memory
# arithmetic", measured 0.81-1.06 and 0.53-1.01 on the configs there).
CALIBRATION_FACTOR = 2.0


@pytest.mark.parametrize(
    "name, size", [("tiny_test", 16), ("swin_cifar_t", 32), ("swin_t", 224), ("swin_b", 384)]
)
def test_parameter_bytes_are_the_parameter_count_times_four(name: str, size: int) -> None:
    model = memory.model_at(name, size)
    state = memory.state_bytes(model)
    assert state.params == 4 * count_params(param_shapes(model))
    assert state.mu == state.nu == state.grads == state.params  # float32 Adam, one tree
    assert state.ema == state.gathered == 0


def test_384_uses_timms_window_12_for_the_imagenet_presets() -> None:
    assert memory.model_at("swin_b", 384).stage_specs()[0].window == (12, 12)
    assert memory.model_at("swin_t", 224).stage_specs()[0].window == (7, 7)
    assert memory.model_at("tiny_test", 16).window_size == create_model("tiny_test").window_size


def test_state_bytes_match_a_real_train_state() -> None:
    config = make_tiny_config(adam_mu_dtype="bfloat16", ema_decay=0.99)
    model = create_model("tiny_test")
    state = create_train_state(config, model, steps_per_epoch=1)
    predicted = memory.state_bytes(model, adam_mu_dtype="bfloat16", ema=True)
    assert predicted.mu * 2 == predicted.nu  # bfloat16 first moment
    assert parallel.bytes_per_device(state.params) == predicted.params
    assert parallel.bytes_per_device(state.ema_params) == predicted.ema
    optimizer = parallel.bytes_per_device(state.opt_state)  # moments + a few scalars
    assert predicted.mu + predicted.nu <= optimizer <= predicted.mu + predicted.nu + 1024


def test_fsdp_divides_the_state_by_the_device_count() -> None:
    model = memory.model_at("swin_t", 224)
    whole = memory.state_bytes(model)
    split = memory.state_bytes(model, sharding="fsdp", devices=8)
    assert whole.state / 8 <= split.state <= 1.05 * whole.state / 8  # small arrays stay whole
    assert split.grads == split.params  # gradients reduce-scattered like the parameters
    assert split.gathered == whole.params  # float32 compute: one whole gathered copy
    assert memory.state_bytes(model, sharding="fsdp", devices=1) == whole
    assert memory.state_bytes(model, sharding="replicated", devices=8) == whole


def test_remat_full_keeps_less_than_blocks_less_than_none() -> None:
    saved = {
        remat: memory.activation_bytes(memory.model_at("swin_t", 224, remat=remat))
        for remat in ("none", "blocks", "full")
    }
    assert saved["full"].saved < saved["blocks"].saved < saved["none"].saved
    assert saved["full"].total < saved["blocks"].total < saved["none"].total
    f32 = saved["none"].total
    bf16 = memory.activation_bytes(memory.model_at("swin_t", 224, dtype="bfloat16")).total
    assert 0.5 * f32 < bf16 < f32  # halved, but the float32 softmax and statistics stay


def test_accumulation_divides_the_activations_by_k() -> None:
    model = memory.model_at("swin_t", 224)
    one = memory.predict(model, global_batch=64, devices=2)
    four = memory.predict(model, global_batch=64, devices=2, grad_accum_steps=4)
    assert one.microbatch == 32 and four.microbatch == 8
    assert four.activations * 4 == one.activations
    assert four.state.grads == 2 * one.state.grads  # the accumulation carry


def test_largest_microbatch_fits_and_one_more_does_not() -> None:
    model = memory.model_at("swin_t", 384, dtype="bfloat16")
    kwargs = dict(sharding="fsdp", devices=8, adam_mu_dtype="bfloat16")
    device, headroom = 40 * memory.GIB, 0.1
    m = memory.largest_microbatch(model, device_bytes=device, headroom=headroom, **kwargs)
    assert m >= 1
    for micro, fits in ((m, True), (m + 1, False)):
        p = memory.predict(model, global_batch=8 * 2 * micro, grad_accum_steps=2, **kwargs)
        assert (p.total_bytes <= device * (1 - headroom)) is fits
    assert memory.largest_microbatch(model, device_bytes=memory.GIB // 4, **kwargs) == 0
    k = memory.accum_steps_needed(512, 8, m)
    assert k is not None and 512 // 8 // k <= m and (512 // 8) % k == 0
    assert memory.accum_steps_needed(512, 8, 0) is None


def test_activation_estimate_is_within_a_factor_of_xlas_temp_bytes() -> None:
    model = memory.model_at("tiny_test", 16, kernels="reference")
    measured = memory_calibration.temp_bytes_per_image(model, batch=8)
    if measured is None:
        pytest.fail(f"{jax.default_backend()} gives no memory analysis")
    ratio = memory.activation_bytes(model).total / measured
    assert 1 / CALIBRATION_FACTOR <= ratio <= CALIBRATION_FACTOR, ratio


@pytest.mark.parametrize("remat", ["none", "blocks", "full"])
def test_saved_estimate_is_within_a_factor_of_what_jax_saves(remat: str) -> None:
    model = memory.model_at("tiny_test", 16, remat=remat, kernels="reference")
    ratio = memory.activation_bytes(model).saved / memory_calibration.saved_bytes_per_image(model)
    assert 1 / CALIBRATION_FACTOR <= ratio <= CALIBRATION_FACTOR, ratio


def test_bad_inputs_are_refused_with_the_fix() -> None:
    model = memory.model_at("tiny_test", 16)
    with pytest.raises(ConfigError, match="multiple of 16"):
        memory.predict(model, global_batch=100, devices=8, grad_accum_steps=2)
    with pytest.raises(ConfigError, match="'replicated' or 'fsdp'"):
        memory.state_bytes(model, sharding="zero3")
    with pytest.raises(ConfigError, match="adam_mu_dtype"):
        memory.state_bytes(model, adam_mu_dtype="float16")
    with pytest.raises(ConfigError, match="devices=0"):
        memory.state_bytes(model, devices=0)
    with pytest.raises(ConfigError, match="dtype='float16'"):
        memory.activation_bytes(create_model("tiny_test", dtype="float16"))
    with pytest.raises(ConfigError, match="headroom"):
        memory.largest_microbatch(model, device_bytes=memory.GIB, headroom=1.0)
    with pytest.raises(ConfigError, match="device_bytes"):
        memory.largest_microbatch(model, device_bytes=0)
    with pytest.raises(ConfigError, match="img_size"):
        memory.model_at("swin_t", 230)
