"""Hugging Face transformers checkpoints (tools/make_golden_hf.py: a random-weight three-stage
``SwinForImageClassification`` saved by ``save_pretrained``) load through the normal weights path
and give transformers' logits within 1e-4, in the hub files' names and in transformers 5's module
names; a ``SwinModel`` file (no classifier) loads with a fresh head and gives its pooled output;
a truncated file is an error naming what is missing. numpy only."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from swinjax.errors import CheckpointMismatchError
from swinjax.models import SwinTransformer, param_shapes
from swinjax.weights import hf_layout
from swinjax.weights.load import format_report, load_pretrained, load_state_dict
from tests.test_convert import GOLDEN, state_dict

FILE = GOLDEN / "hf_swin32.safetensors"
# Three stages (two mergings), patch 2; two stages, patch 4, absolute position embedding.
CASES = ("hf_swin32", "hf_swin32_ape")


def load_golden(case: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(the fixture's transformers config, its arrays: input, logits, pooled, names)."""
    meta = json.loads((GOLDEN / f"{case}.json").read_text())
    with np.load(GOLDEN / f"{case}.npz") as npz:
        return meta, {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def golden() -> tuple[dict, dict[str, np.ndarray]]:
    return load_golden("hf_swin32")


def model_of(meta: dict, **overrides) -> SwinTransformer:
    """The swinjax model of a transformers SwinConfig."""
    kwargs = dict(
        img_size=meta["image_size"],
        patch_size=meta["patch_size"],
        in_chans=meta["num_channels"],
        embed_dim=meta["embed_dim"],
        depths=tuple(meta["depths"]),
        num_heads=tuple(meta["num_heads"]),
        window_size=meta["window_size"],
        mlp_ratio=meta["mlp_ratio"],
        num_classes=meta["num_labels"],
        ape=meta["use_absolute_embeddings"],
        drop_path_rate=0.0,
    )
    return SwinTransformer(**(kwargs | overrides))


def run(model: SwinTransformer, params: dict, x_NHWC: np.ndarray) -> np.ndarray:
    return np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(x_NHWC)))


@pytest.mark.parametrize("case", CASES)
def test_hub_file_matches_transformers_logits(case: str) -> None:
    meta, arrays = load_golden(case)
    model = model_of(meta)
    file = GOLDEN / f"{case}.safetensors"
    params, report = load_pretrained(str(file), model)
    assert report.layout == "transformers"
    assert not (report.missing or report.unused or report.resized or report.head_reset)
    # q, k and v (weight and bias) merged into one qkv per block.
    assert len(report.loaded) == len(load_state_dict(file)) - sum(meta["depths"]) * 2 * 2
    assert ("absolute_pos_embed" in report.loaded) == meta["use_absolute_embeddings"]
    assert "(transformers layout)" in format_report(report)
    logits = run(model, params, arrays["input_NHWC"])
    np.testing.assert_allclose(logits, arrays["logits"], atol=1e-4, rtol=0)
    assert np.abs(arrays["logits"]).max() > 0.1


def test_module_names_of_transformers_5_give_the_same_params(golden) -> None:
    meta, arrays = golden
    saved = load_state_dict(FILE)
    renamed = {live: saved[name] for name, live in arrays["names"]}
    assert renamed.keys() != saved.keys()  # this version's names differ (q_proj, mlp.fc1, ...)
    assert hf_layout.is_transformers_layout(renamed)
    a, _ = load_pretrained(saved, model_of(meta))
    b, _ = load_pretrained(renamed, model_of(meta))
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("case", CASES)
def test_swin_model_file_loads_with_a_fresh_head(case: str) -> None:
    """SwinModel saves the classification file's names without ``swin.`` or the classifier
    (checked by make_golden_hf); its pooled output is the num_classes=0 model's."""
    meta, arrays = load_golden(case)
    saved = load_state_dict(GOLDEN / f"{case}.safetensors")
    backbone = {k.removeprefix("swin."): v for k, v in saved.items() if "classifier" not in k}
    model = model_of(meta)
    init = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), param_shapes(model))
    params, report = load_pretrained(backbone, model, init_params=init)
    classes = meta["num_labels"]
    assert report.layout == "transformers" and report.head_reset == (None, classes)
    assert sorted(report.missing) == ["head.fc.bias", "head.fc.weight"]
    assert f"head initialised (the checkpoint has none; {classes} classes)" in format_report(report)
    assert not params["head"]["fc"]["kernel"].any()

    features = model_of(meta, num_classes=0)
    pooled_params, _ = load_pretrained(backbone, features)
    pooled = run(features, pooled_params, arrays["input_NHWC"])
    np.testing.assert_allclose(pooled, arrays["pooled"], atol=1e-4, rtol=0)


def test_layout_detection() -> None:
    saved = load_state_dict(FILE)
    assert hf_layout.is_transformers_layout(saved)
    assert hf_layout.is_transformers_layout({k.removeprefix("swin."): v for k, v in saved.items()})
    timm_sd = state_dict(dict(np.load(GOLDEN / "swin32.npz")), "timm")
    assert not hf_layout.is_transformers_layout(timm_sd)


def test_merging_moves_to_the_next_stage_and_buffers_are_dropped() -> None:
    saved = load_state_dict(FILE)
    index = "swin.encoder.layers.0.blocks.0.attention.self.relative_position_index"
    with_buffer = {**saved, index: np.zeros(16, np.int64)}  # transformers 4 saved these
    timm_sd, buffers = hf_layout.transformers_to_timm(with_buffer)
    assert buffers == [index]
    np.testing.assert_array_equal(
        timm_sd["layers.1.downsample.reduction.weight"],
        saved["swin.encoder.layers.0.downsample.reduction.weight"],
    )
    assert not any(k.startswith("layers.0.downsample") for k in timm_sd)
    qkv = timm_sd["layers.2.blocks.1.attn.qkv.weight"]
    q = saved["swin.encoder.layers.2.blocks.1.attention.self.query.weight"]
    v = saved["swin.encoder.layers.2.blocks.1.attention.self.value.weight"]
    assert qkv.shape == (3 * q.shape[0], q.shape[1])
    np.testing.assert_array_equal(qkv[: q.shape[0]], q)
    np.testing.assert_array_equal(qkv[-q.shape[0] :], v)


def test_truncated_file_names_what_is_missing(tmp_path, golden) -> None:
    meta, _ = golden
    saved = load_state_dict(FILE)
    no_key = dict(saved)
    del no_key["swin.encoder.layers.1.blocks.0.attention.self.key.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"no key weight of that block"):
        load_pretrained(no_key, model_of(meta))

    cut = {k: v for k, v in saved.items() if not k.startswith("swin.encoder.layers.2.")}
    path = tmp_path / "cut.safetensors"
    save_file(cut, str(path))
    with pytest.raises(CheckpointMismatchError, match=r"missing: 'layers\.2\.blocks\.0\."):
        load_pretrained(str(path), model_of(meta))
    # Another architecture: the fields that differ are named.
    with pytest.raises(CheckpointMismatchError, match=r"embed_dim=8 \(this model: 16\)"):
        load_pretrained(saved, model_of(meta, embed_dim=16))


@pytest.mark.slow
def test_init_from_a_transformers_file(tmp_path, golden, capsys) -> None:
    """``config.init_from`` takes the file as training's start (one step at a negligible rate),
    the classifier re-initialised for the run's classes."""
    from swinjax.training import checkpoint, trainer
    from tests.conftest import make_tiny_config

    meta, _ = golden
    config = make_tiny_config(
        num_epochs=1, max_steps=1, learning_rate=1e-9, classes="5,6,7,8", init_from=str(FILE)
    )
    arch = model_of(meta)
    for field in ("img_size", "patch_size", "embed_dim", "window_size", "mlp_ratio"):
        config.model_kwargs[field] = getattr(arch, field)
    config.model_kwargs.depths, config.model_kwargs.num_heads = arch.depths, arch.num_heads
    trainer.train_and_evaluate(config, tmp_path)
    out = capsys.readouterr().out
    assert f"pretrained weights from {FILE} (transformers layout)" in out
    assert "head re-initialised (10 -> 4 classes)" in out
    params, _ = checkpoint.restore(tmp_path, "latest")
    saved = load_state_dict(FILE)
    kernel = params["layers_1"]["downsample"]["reduction"]["kernel"]
    reduction = saved["swin.encoder.layers.0.downsample.reduction.weight"]
    np.testing.assert_allclose(np.asarray(kernel), reduction.T, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_the_way_back_gives_the_hub_file(case: str) -> None:
    """timm_to_transformers inverts the load: the same names and tensors as save_pretrained's file,
    from swinjax params too."""
    from swinjax.weights.convert import params_from_timm, params_to_timm

    saved = load_state_dict(GOLDEN / f"{case}.safetensors")
    timm_sd, _ = hf_layout.transformers_to_timm(saved)
    for back in (
        hf_layout.timm_to_transformers(timm_sd),
        hf_layout.timm_to_transformers(params_to_timm(params_from_timm(timm_sd))),
    ):
        assert back.keys() == saved.keys()
        for k, v in saved.items():
            np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_the_way_back_refuses_what_transformers_cannot_hold() -> None:
    with pytest.raises(CheckpointMismatchError, match=r"'patch_embed\.conv_proj\.weight' has no"):
        hf_layout.timm_to_transformers({"patch_embed.conv_proj.weight": np.zeros((8, 3, 3, 3))})
