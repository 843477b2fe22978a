"""Parameter and FLOP counts: every preset that timm has the architecture of (Swin V1 and V2) has
timm's parameter count exactly and timm's forward FLOPs per image (tests/golden/timm_counts.json,
counted by torch's FlopCounterMode in tools/make_golden_v2.py) by the same rule
(swinjax.models.flops: matrix products and convolutions, 2 x M x N x K); the counter's rule on
small programs; ``python -m swinjax.model --list``."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

from swinjax.model import main
from swinjax.models import PRESETS, count_params, create_model, param_shapes
from swinjax.models.flops import matmul_flops
from swinjax.models.presets import matmul_flops_per_image
from tests.test_convert import GOLDEN

COUNTS = json.loads((GOLDEN / "timm_counts.json").read_text())["presets"]
# Presets timm has no architecture for: its Swin has no absolute position embedding and no stage
# without blocks (the Keras example has both).
NOT_IN_TIMM = {"keras_example"}


def test_every_preset_is_counted_or_known_not_to_be_in_timm() -> None:
    assert set(COUNTS) == set(PRESETS) - NOT_IN_TIMM
    for name, entry in COUNTS.items():
        model = create_model(name)
        assert (model.img_size, model.num_classes) == (entry["img_size"], entry["num_classes"])


# The fast tier traces one model of each kind (small V1 and V2, ImageNet V1 and V2; a few seconds
# each); the others (5-8 s each on the 2-core VM) run with the slow tests.
FAST = ("tiny_test", "swin_cifar_t", "swinv2_cifar_t", "swin_t", "swinv2_tiny_window8_256")


@pytest.mark.parametrize(
    "name",
    [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(COUNTS)],
)
def test_params_and_flops_equal_timms(name: str) -> None:
    """Exactly equal: both count the same products, the continuous-position-bias MLP of every V2
    block included (timm runs it in each forward, as swinjax does)."""
    model = create_model(name)
    assert count_params(param_shapes(model)) == COUNTS[name]["params"]
    assert matmul_flops_per_image(model) == COUNTS[name]["flops"]


def test_flops_do_not_depend_on_the_kernel_set() -> None:
    model = create_model("tiny_test", version=2)  # windows of 16 tokens: elementwise on the cpu
    assert matmul_flops_per_image(model.clone(kernels="cpu")) == matmul_flops_per_image(model)


def test_matmul_rule_on_small_programs() -> None:
    """2 M N K per product (batch dimensions multiply), 2 x output x kernel-per-channel per
    convolution, nothing for elementwise ops, a scan's body times its length, inside jit."""
    a, b = jnp.zeros((3, 5, 7)), jnp.zeros((3, 7, 2))
    assert matmul_flops(lambda x, y: jnp.tanh(x @ y) + 1, a, b) == 2 * 3 * 5 * 2 * 7
    img, w = jnp.zeros((1, 8, 8, 3)), jnp.zeros((4, 4, 3, 6))  # stride 4 -> (1, 2, 2, 6)
    conv = lambda x, k: jax.lax.conv_general_dilated(
        x, k, (4, 4), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    assert matmul_flops(conv, img, w) == 2 * (2 * 2 * 6) * (4 * 4 * 3)

    def loop(x, m):
        return jax.lax.scan(lambda c, _: (c @ m, None), x, None, length=5)[0]

    sq = jnp.zeros((4, 4))
    assert matmul_flops(jax.jit(loop), sq, sq) == 5 * 2 * 4 * 4 * 4


@pytest.mark.slow
def test_model_list_prints_both_counts(capsys: pytest.CaptureFixture[str]) -> None:
    name = "swinv2_cifar_t"
    assert main(["swinjax.model", "--list", f"--preset={name}"]) == 0
    out = capsys.readouterr().out
    header, row = out.strip().splitlines()
    assert "GFLOPs matmul" in header and "GFLOPs xla" in header
    assert row.split()[0] == name and row.split()[1] == "2"
    assert f"{COUNTS[name]['params']:,}" in row
    assert f"{COUNTS[name]['flops'] / 1e9:.3f}" in row


def test_model_without_list_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["swinjax.model"]) != 0
    assert "pass --list" in capsys.readouterr().err
