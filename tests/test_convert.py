"""Parity with timm: random-weight timm models (fixtures from tools/make_golden.py) converted with
params_from_timm give timm's logits within 1e-4 in float32, under either kernel set
(swinjax.models.layers.kernel_sets), also when loaded into a model of another image, window or patch
size (timm's checkpoint_filter_fn did the same in the fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from swinjax.errors import CheckpointMismatchError
from swinjax.models import SwinTransformer
from swinjax.weights import convert, resample
from swinjax.weights.convert import convert_checkpoint, params_from_timm

GOLDEN = Path(__file__).parent / "golden"
CASES = ("swin224", "swin32")
RESIZED = ("swin224_to256", "swin32_to64", "swin32_patch4", "swin32_to24")


def load_case(name: str) -> tuple[SwinTransformer, dict, np.ndarray, np.ndarray]:
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    arrays = dict(np.load(GOLDEN / f"{name}.npz"))
    return model_of(meta), arrays, arrays["input_NHWC"], arrays["logits"]


def model_of(meta: dict, **overrides) -> SwinTransformer:
    """The swinjax model of a fixture's config, with any field overridden."""
    fields = ("img_size", "patch_size", "window_size", "embed_dim", "mlp_ratio", "num_classes")
    kwargs = {k: meta[k] for k in fields}
    kwargs.update(depths=tuple(meta["depths"]), num_heads=tuple(meta["num_heads"]))
    return SwinTransformer(**(kwargs | overrides), drop_path_rate=0.0)


def logits_of(model: SwinTransformer, params: dict, x_NHWC: np.ndarray) -> np.ndarray:
    """The model's float32 logits (jitted: one compilation, faster than op-by-op here)."""
    return np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(x_NHWC)))


def state_dict(arrays: dict, layout: str) -> dict[str, np.ndarray]:
    prefix = f"{layout}/"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("layout", ["timm", "official"])
@pytest.mark.parametrize("kernels", ["cpu", "reference"])
def test_logits_match_timm(case: str, layout: str, kernels: str) -> None:
    model, arrays, x, expected = load_case(case)
    model = model.clone(kernels=kernels)
    sd = state_dict(arrays, layout)
    if layout == "official":
        sd = {"model": sd}  # how microsoft/Swin-Transformer saves its checkpoints
    params = params_from_timm(sd, model=model)
    logits = logits_of(model, params, x)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 0.1  # the fixture is not trivially near zero


def test_swin32_fixture_has_shifted_windows_in_two_stages() -> None:
    model, arrays, _, _ = load_case("swin32")
    shifted = [s for s in model.stage_specs() if any(s.shift)]
    assert len(shifted) >= 2
    official = state_dict(arrays, "official")
    assert sum(k.endswith("attn_mask") for k in official) >= 2


def test_conversion_without_model_gives_same_tree() -> None:
    model, arrays, x, expected = load_case("swin32")
    params = params_from_timm(state_dict(arrays, "timm"))
    logits = logits_of(model, params, x)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_missing_key_is_named() -> None:
    model, arrays, _, _ = load_case("swin32")
    sd = state_dict(arrays, "timm")
    del sd["layers.1.blocks.0.mlp.fc1.weight"]
    with pytest.raises(
        CheckpointMismatchError, match=r"missing: 'layers\.1\.blocks\.0\.mlp\.fc1\.weight'"
    ):
        params_from_timm(sd, model=model)


def test_unexpected_key_is_named() -> None:
    model, arrays, _, _ = load_case("swin32")
    sd = state_dict(arrays, "timm")
    sd["layers.0.blocks.7.norm1.weight"] = np.ones(24, np.float32)
    with pytest.raises(
        CheckpointMismatchError, match=r"unexpected: 'layers\.0\.blocks\.7\.norm1\.weight'"
    ):
        params_from_timm(sd, model=model)


def test_shape_mismatch_is_named() -> None:
    _, arrays, _, _ = load_case("swin32")
    wrong = SwinTransformer(
        img_size=32,
        patch_size=2,
        window_size=4,
        embed_dim=24,
        depths=(2, 2, 2),
        num_heads=(2, 4, 8),
        mlp_ratio=2.0,
        num_classes=7,
    )
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch for 'head\.fc\.weight'"):
        params_from_timm(state_dict(arrays, "timm"), model=wrong)


def load_resized(name: str) -> tuple[SwinTransformer, dict, dict, dict]:
    """(target model, meta, the resized fixture's arrays, the source fixture's arrays)."""
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    source = dict(np.load(GOLDEN / f"{meta['source']}.npz"))
    return model_of(meta), meta, dict(np.load(GOLDEN / f"{name}.npz")), source


def u8_to_input(u8_NHWC: np.ndarray) -> np.ndarray:
    """As tools/make_golden.py computes timm's input from the stored uint8 images."""
    return u8_NHWC.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


@pytest.mark.parametrize("case", RESIZED)
def test_resized_load_matches_timm(case: str) -> None:
    model, meta, arrays, source = load_resized(case)
    params, report = convert_checkpoint(state_dict(source, "timm"), model)
    official, official_report = convert_checkpoint({"model": state_dict(source, "official")}, model)
    # Both layouts give the same params, and the report names exactly what timm's filter changed.
    for path, value in traverse_util.flatten_dict(params).items():
        np.testing.assert_array_equal(traverse_util.flatten_dict(official)[path], value)
    assert [r.key for r in report.resized] == meta["changed"]
    assert [r.key for r in official_report.resized] == meta["changed"]
    assert (report.layout, official_report.layout) == ("timm", "official")
    assert not report.unused and not report.missing and not report.head_reset
    assert len(report.loaded) + len(report.resized) == len(state_dict(source, "timm"))
    for r in report.resized:
        assert r.to_shape == arrays[f"adapted/{r.key}"].shape
        assert r.from_shape == state_dict(source, "timm")[r.key].shape

    logits = logits_of(model, params, u8_to_input(arrays["input_NHWC_u8"]))
    np.testing.assert_allclose(logits, arrays["logits"], atol=1e-4, rtol=0)
    assert np.abs(arrays["logits"]).max() > 0.1


@pytest.mark.parametrize("case", RESIZED)
def test_adapted_tensors_match_timm(case: str) -> None:
    """Relative position tables bit for bit (timm's float32 interpolation replayed), the
    resampled patch embedding to float32 rounding (timm's float32 pinv)."""
    model, meta, arrays, source = load_resized(case)
    sd = state_dict(source, "timm")
    for key in meta["changed"]:
        ours = convert._adapt(key, sd[key], _flax_shape(model, key), model)[0]
        if key.endswith("relative_position_bias_table"):
            np.testing.assert_array_equal(ours, arrays[f"adapted/{key}"])
        else:
            np.testing.assert_allclose(ours, arrays[f"adapted/{key}"], atol=1e-5, rtol=1e-5)


def _flax_shape(model: SwinTransformer, key: str) -> tuple[int, ...]:
    from swinjax.models import param_shapes

    shapes = traverse_util.flatten_dict(param_shapes(model))
    return next(tuple(s.shape) for p, s in shapes.items() if convert._timm_key(p) == key)


def test_resample_functions_match_timm() -> None:
    """timm's resample_abs_pos_embed / resample_patch_embed / resize_rel_pos_bias_table on random
    tensors (up, down, non-square; a table with 3 extra class-token rows)."""
    arrays = dict(np.load(GOLDEN / "resample.npz"))
    for name, expected in arrays.items():
        kind, size = name.split("/")
        if size == "source":
            continue
        hw = tuple(int(v) for v in size.split("x"))
        src = arrays[f"{kind}/source"]
        if kind == "ape":
            np.testing.assert_allclose(
                resample.resample_abs_pos_embed(src, hw), expected, atol=1e-5
            )
        elif kind == "patch":
            ours = resample.resample_patch_embed(src, hw)
            np.testing.assert_allclose(ours, expected, atol=1e-4 * np.abs(expected).max())
        else:
            ours = resample.resize_rel_pos_bias_table(src, hw, expected.shape[0])
            np.testing.assert_array_equal(ours, expected)
            np.testing.assert_array_equal(ours[-3:], src[-3:])  # the extra rows kept


def test_absolute_position_embedding_is_resampled_like_timm() -> None:
    """An official-style ``ape`` checkpoint (16x16 grid) into a 64x64 / patch 2 model (32x32)."""
    meta = json.loads((GOLDEN / "swin32.json").read_text())
    source, resample = dict(np.load(GOLDEN / "swin32.npz")), dict(np.load(GOLDEN / "resample.npz"))
    sd = {**state_dict(source, "timm"), "absolute_pos_embed": resample["ape/source"]}
    model = model_of(meta, img_size=64, window_size=8, ape=True)
    params, report = convert_checkpoint(sd, model)
    np.testing.assert_allclose(params["absolute_pos_embed"], resample["ape/32x32"], atol=1e-5)
    ape = next(r for r in report.resized if r.key == "absolute_pos_embed")
    assert (ape.from_shape, ape.to_shape, ape.how) == ((1, 256, 24), (1, 1024, 24), "grid 32x32")


def test_unresizable_table_is_named() -> None:
    model, arrays, _, _ = load_case("swin32")
    sd = state_dict(arrays, "timm")
    sd["layers.1.blocks.0.attn.relative_position_bias_table"] = np.zeros((50, 4), np.float32)
    with pytest.raises(
        CheckpointMismatchError, match=r"'layers\.1\.blocks\.0\.attn\.relative_position_bias_table'"
    ):
        params_from_timm(sd, model=model)


def test_other_width_or_heads_raise_naming_the_key() -> None:
    _, arrays, _, _ = load_case("swin32")
    meta = json.loads((GOLDEN / "swin32.json").read_text())
    sd = state_dict(arrays, "timm")
    with pytest.raises(
        CheckpointMismatchError, match=r"shape mismatch for 'patch_embed\.proj\.weight'"
    ):
        params_from_timm(sd, model=model_of(meta, embed_dim=32))
    # Other heads: the tables cannot be resized (a head is not a position), nor qkv reused.
    with pytest.raises(
        CheckpointMismatchError, match=r"'layers\.0\.blocks\.0\.attn\.relative_position_bias_table'"
    ):
        params_from_timm(sd, model=model_of(meta, num_heads=(4, 4, 8)))


def test_skip_leaves_params_out_on_both_sides() -> None:
    model, arrays, _, _ = load_case("swin32")
    params, report = convert_checkpoint(state_dict(arrays, "timm"), model, skip=("head",))
    assert "head" not in params
    assert sorted(report.unused) == sorted(report.missing) == ["head.fc.bias", "head.fc.weight"]
    assert report.head_reset == (10, 10)
    assert "head" not in params_from_timm(state_dict(arrays, "timm"), model=model, skip=("head",))
