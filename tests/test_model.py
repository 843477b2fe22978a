"""Model library: window geometry, locality, stochastic depth, presets, dtypes, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.models import PRESETS, SwinTransformer, count_params, create_model, param_shapes
from swinjax.models.layers import windows
from swinjax.models.layers.blocks import DropPath, PatchMerging, SwinBlock
from swinjax.presets import main

# ---------------------------------------------------------------- window geometry (hand-computed)


def test_relative_position_index_2x2_by_hand() -> None:
    # Tokens (0,0) (0,1) (1,0) (1,1); index = (dy + 1) * 3 + (dx + 1) with d = query - key.
    expected = np.array([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    np.testing.assert_array_equal(windows.relative_position_index((2, 2)), expected)


def test_relative_position_index_rectangular_window() -> None:
    index = windows.relative_position_index((2, 3))  # table has 3 * 5 rows
    assert index.shape == (6, 6) and index.min() == 0 and index.max() == 14
    assert np.all(np.diag(index) == 1 * 5 + 2)  # zero offset is the table's centre row
    assert index[0, 5] == (0 - 1 + 1) * 5 + (0 - 2 + 2)  # query (0,0), key (1,2)


def test_shift_mask_4x4_window2_shift1_by_hand() -> None:
    m = windows.MASK_VALUE
    mask = windows.shifted_window_mask((4, 4), (2, 2), (1, 1))
    assert mask.shape == (4, 4, 4)
    # Window 0 (rows 0-1, cols 0-1): one region, nothing masked.
    np.testing.assert_array_equal(mask[0], np.zeros((4, 4)))
    # Window 1 (rows 0-1, cols 2-3): columns 2 and 3 come from different regions.
    np.testing.assert_array_equal(mask[1], [[0, m, 0, m], [m, 0, m, 0], [0, m, 0, m], [m, 0, m, 0]])
    # Window 2 (rows 2-3, cols 0-1): rows 2 and 3 come from different regions.
    np.testing.assert_array_equal(mask[2], [[0, 0, m, m], [0, 0, m, m], [m, m, 0, 0], [m, m, 0, 0]])
    # Window 3 (rows 2-3, cols 2-3): four regions, each token attends to itself only.
    np.testing.assert_array_equal(mask[3], np.where(np.eye(4), 0, m))


def test_partition_reverse_roundtrip_and_order() -> None:
    x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
    w = windows.window_partition(x, (2, 3))
    assert w.shape == (2 * 2 * 2, 6, 3)
    np.testing.assert_array_equal(w[1], x[0, 0:2, 3:6].reshape(6, 3))  # second window of row 0
    np.testing.assert_array_equal(windows.window_reverse(w, (2, 3), 4, 6), x)


def test_clamp_rule() -> None:
    assert windows.clamp_window((7, 7), (7, 7), (3, 3)) == ((7, 7), (0, 0))
    assert windows.clamp_window((4, 16), (8, 8), (4, 4)) == ((4, 8), (0, 4))
    specs = create_model("swin_t").stage_specs()
    assert [s.resolution for s in specs] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert [s.shift for s in specs] == [(3, 3)] * 3 + [(0, 0)]


# ---------------------------------------------------------------- locality (gradient checks)


def _output_input_dependence(shift: tuple[int, int], query: tuple[int, int]) -> np.ndarray:
    """|d out[query] / d x| summed over channels: (H, W), for one block on an 8x8 map."""
    block = SwinBlock(num_heads=2, window=(4, 4), shift=shift, mlp_ratio=2.0)
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 8))
    params = block.init(jax.random.key(1), x, True)

    def token_out(x_):
        return block.apply(params, x_, True)[0, query[0], query[1]].sum()

    return np.abs(np.asarray(jax.grad(token_out)(x)))[0].sum(-1)


def test_regular_window_token_sees_only_its_window() -> None:
    dep = _output_input_dependence((0, 0), (1, 2))
    inside = np.zeros((8, 8), bool)
    inside[0:4, 0:4] = True
    assert np.all(dep[~inside] == 0.0)
    assert np.all(dep[inside] > 0.0)


def test_shifted_window_token_sees_only_its_masked_region() -> None:
    # Shift 2: the corner token shares a window with rows/cols 6,7,0,1 after the roll, but the
    # mask keeps it to the tokens that are its neighbours in the image: rows 0-1, cols 0-1.
    dep = _output_input_dependence((2, 2), (0, 0))
    inside = np.zeros((8, 8), bool)
    inside[0:2, 0:2] = True
    assert np.all(dep[~inside] == 0.0)
    assert np.all(dep[inside] > 0.0)


def test_patch_merging_channel_order() -> None:
    x = jnp.arange(4 * 4, dtype=jnp.float32).reshape(1, 4, 4, 1)
    merge = PatchMerging(out_dim=4, norm=False)
    params = {"params": {"reduction": {"kernel": jnp.eye(4)}}}
    out = merge.apply(params, x)
    # Paper order: x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2].
    np.testing.assert_array_equal(
        out[0, 0, 0], [x[0, 0, 0, 0], x[0, 1, 0, 0], x[0, 0, 1, 0], x[0, 1, 1, 0]]
    )


# ---------------------------------------------------------------- stochastic depth


def test_drop_path_drops_whole_samples_and_rescales() -> None:
    x = jnp.ones((512, 4, 4, 3))
    out = np.asarray(DropPath(rate=0.25).apply({}, x, False, rngs={"dropout": jax.random.key(0)}))
    per_sample = out.reshape(512, -1)
    assert np.all((per_sample == 0.0).all(1) | (per_sample == 1 / 0.75).all(1))
    dropped = (per_sample == 0.0).all(1).mean()
    assert 0.18 < dropped < 0.32
    np.testing.assert_allclose(out.mean(), 1.0, atol=0.1)  # unbiased in expectation


def test_drop_path_element_mode_and_deterministic() -> None:
    x = jnp.ones((4, 8, 8, 16))
    out = np.asarray(
        DropPath(rate=0.5, mode="element").apply({}, x, False, rngs={"dropout": jax.random.key(0)})
    )
    assert set(np.unique(out)) == {0.0, 2.0}
    assert all(0 < (s == 0).mean() < 1 for s in out)  # zeros scattered inside each sample
    np.testing.assert_array_equal(DropPath(rate=0.5).apply({}, x, True), x)


def test_drop_path_rates_rise_linearly_over_depth() -> None:
    model = create_model("swin_t", drop_path_rate=0.2)
    rates = [r for s in model.stage_specs() for r in s.drop_paths]
    np.testing.assert_allclose(rates, np.linspace(0, 0.2, 12))


# ---------------------------------------------------------------- presets and the full model


def test_keras_example_has_the_seeds_parameter_count() -> None:
    model = create_model("keras_example")
    assert model.num_classes == 100
    assert count_params(param_shapes(model)) == 162_996


@pytest.mark.parametrize(
    "name, expected",
    [
        ("swin_t", 28_288_354),
        ("swin_s", 49_606_258),
        ("swin_b", 87_768_224),
        ("swin_l", 196_532_476),
    ],
)
def test_imagenet_presets_match_timm_parameter_counts(name: str, expected: int) -> None:
    # timm.create_model(f"{name}_patch4_window7_224") counts, taken from timm 1.0.31.
    assert count_params(param_shapes(create_model(name))) == expected


def test_forward_train_and_eval() -> None:
    model = create_model("tiny_test")
    x = jax.random.uniform(jax.random.key(0), (3, 16, 16, 3))
    variables = model.init(jax.random.key(1), x)
    eval1 = model.apply(variables, x)
    np.testing.assert_array_equal(eval1, model.apply(variables, x, train=False))
    assert eval1.shape == (3, 10) and eval1.dtype == jnp.float32
    t1 = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    t2 = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(t1, t2)


@pytest.mark.slow
def test_bfloat16_compute_close_to_float32() -> None:
    x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
    f32 = create_model("tiny_test", drop_path_rate=0.0)
    params = f32.init(jax.random.key(1), x)["params"]
    bf16 = create_model("tiny_test", drop_path_rate=0.0, dtype="bfloat16")
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(bf16.init(jax.random.key(1), x)))
    ref = np.asarray(f32.apply({"params": params}, x))
    low = np.asarray(bf16.apply({"params": params}, x))
    assert low.dtype == np.float32 and np.all(np.isfinite(low))
    assert np.linalg.norm(low - ref) / np.linalg.norm(ref) < 3e-2


@pytest.mark.slow
def test_list_presets_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["swinjax.presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out
    assert "162,996" in out and "28,288,354" in out


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(img_size=30), r"img_size \(30, 30\) is not divisible by patch_size \(4, 4\)"),
        (
            dict(window_size=5),
            r"stage 0: resolution \(56, 56\) is not divisible by window \(5, 5\)",
        ),
        (dict(embed_dim=100), r"stage 0: width 100 .* not divisible by num_heads\[0\] = 3"),
        (
            dict(img_size=40, patch_size=4, window_size=5),
            r"stage 2 merges 2x2 patches .* \(5, 5\) is odd",
        ),
        (dict(depths=(2, 2)), r"depths \(2, 2\) and num_heads \(3, 6, 12, 24\)"),
        (dict(drop_path_rate=1.0), r"drop_path_rate must be in \[0, 1\)"),
        (dict(drop_path_mode="rows"), r"drop_path_mode 'rows' is not one of"),
    ],
)
def test_bad_hyperparameters_raise_named_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("swin_t", **overrides)


def test_unknown_preset_and_field() -> None:
    with pytest.raises(ValueError, match=r"unknown model preset 'swin_x'.*swin_t"):
        create_model("swin_x")
    with pytest.raises(ValueError, match=r"unknown SwinTransformer field\(s\) \['widht'\]"):
        create_model("swin_t", widht=3)


def test_wrong_input_shape_is_named() -> None:
    model = SwinTransformer(
        img_size=32,
        patch_size=2,
        window_size=4,
        embed_dim=16,
        depths=(2,),
        num_heads=(2,),
        num_classes=3,
    )
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 32, 32, 3\)"):
        model.init(jax.random.key(0), jnp.zeros((1, 3, 32, 32)))
