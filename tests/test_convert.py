"""Parity with timm: random-weight timm models (fixtures from tools/make_golden.py) converted with
params_from_timm give timm's logits within 1e-4 in float32."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.convert import CheckpointMismatchError, params_from_timm
from swinjax.model import SwinTransformer

GOLDEN = Path(__file__).parent / "golden"
CASES = ("swin224", "swin32")


def load_case(name: str) -> tuple[SwinTransformer, dict, np.ndarray, np.ndarray]:
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    arrays = dict(np.load(GOLDEN / f"{name}.npz"))
    model = SwinTransformer(
        img_size=meta["img_size"],
        patch_size=meta["patch_size"],
        window_size=meta["window_size"],
        embed_dim=meta["embed_dim"],
        depths=tuple(meta["depths"]),
        num_heads=tuple(meta["num_heads"]),
        mlp_ratio=meta["mlp_ratio"],
        num_classes=meta["num_classes"],
        drop_path_rate=0.0,
    )
    return model, arrays, arrays["input_NHWC"], arrays["logits"]


def state_dict(arrays: dict, layout: str) -> dict[str, np.ndarray]:
    prefix = f"{layout}/"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("layout", ["timm", "official"])
def test_logits_match_timm(case: str, layout: str) -> None:
    model, arrays, x, expected = load_case(case)
    sd = state_dict(arrays, layout)
    if layout == "official":
        sd = {"model": sd}  # how microsoft/Swin-Transformer saves its checkpoints
    params = params_from_timm(sd, model=model)
    logits = np.asarray(model.apply({"params": params}, jnp.asarray(x)))
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
    logits = np.asarray(model.apply({"params": params}, jnp.asarray(x)))
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
