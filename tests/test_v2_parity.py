"""Swin V2 parity with timm: random-weight timm ``SwinTransformerV2`` models (fixtures from
tools/make_golden_v2.py) loaded from timm's and the official layout give timm's logits and stage
maps within 1e-4 in float32, under either kernel set, also when loaded into a model of another
image, window or patch size (timm's V2 ``checkpoint_filter_fn`` and ``pretrained_window_sizes``
did the same in the fixtures); a checkpoint of the other Swin family is refused by name."""

from __future__ import annotations

import json
import math
import sys
import types

import jax
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import save_file

from swinjax.errors import CheckpointMismatchError
from swinjax.models import SwinTransformer, create_model
from swinjax.weights import version
from swinjax.weights.convert import convert_checkpoint, params_from_timm
from swinjax.weights.load import format_report, load_pretrained, load_state_dict
from tests.test_convert import GOLDEN, logits_of, model_of, state_dict, u8_to_input

CASES = ("swinv2_64", "swinv2_pretrained", "swinv2_32")
RESIZED = ("swinv2_32_to64", "swinv2_32_patch4", "swinv2_64_to96")
HUB_MODEL = "timm/swinv2_tiny_window8_256.ms_in1k"


def v2_model(meta: dict, **overrides) -> SwinTransformer:
    """The swinjax V2 model of a fixture's config."""
    pretrained = tuple(meta.get("pretrained_window_sizes", ()))
    return model_of(meta, version=2, pretrained_window_sizes=pretrained, **overrides)


def load_case(name: str) -> tuple[SwinTransformer, dict, dict]:
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    return v2_model(meta), meta, dict(np.load(GOLDEN / f"{name}.npz"))


def official_state_dict(arrays: dict) -> dict[str, np.ndarray]:
    """The official layout as tools/make_golden_v2.py stores it: the renamed tensors by name
    (``official_names``: official key, timm key) and the buffers."""
    renamed = {o: arrays[f"timm/{t}"] for o, t in arrays["official_names"]}
    return renamed | state_dict(arrays, "official")


def checkpoint(arrays: dict, layout: str) -> dict:
    if layout == "official":  # under "model", as microsoft/Swin-Transformer saves it
        return {"model": official_state_dict(arrays)}
    return state_dict(arrays, layout)


def images(arrays: dict) -> np.ndarray:
    return u8_to_input(arrays["input_NHWC_u8"])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kernels", ["cpu", "reference"])
def test_logits_match_timm(case: str, kernels: str) -> None:
    model, _, arrays = load_case(case)
    model = model.clone(kernels=kernels)
    params, report = convert_checkpoint(checkpoint(arrays, "timm"), model)
    assert report.layout == "timm" and not (report.resized or report.missing or report.notes)
    logits = logits_of(model, params, images(arrays))
    np.testing.assert_allclose(logits, arrays["logits"], atol=1e-4, rtol=0)
    assert np.abs(arrays["logits"]).max() > 0.1  # the fixture is not trivially near zero


@pytest.mark.parametrize("case", CASES)
def test_official_layout_gives_the_same_params(case: str) -> None:
    """The official layout (merging at the end of a stage, head.weight, buffers) converts to
    the very params of timm's layout, so it gives timm's logits too (one of them run here)."""
    model, _, arrays = load_case(case)
    params = convert_checkpoint(checkpoint(arrays, "timm"), model)[0]
    official, report = convert_checkpoint(checkpoint(arrays, "official"), model)
    assert report.layout == "official" and not (report.resized or report.missing or report.notes)
    flat, expected = traverse_util.flatten_dict(official), traverse_util.flatten_dict(params)
    assert flat.keys() == expected.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(flat[path], value)
    if case == "swinv2_32":
        logits = logits_of(model, official, images(arrays))
        np.testing.assert_allclose(logits, arrays["logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_stage_maps_match_timm(case: str) -> None:
    """forward_intermediates' stage maps and forward_features against timm's (NHWC): the maps
    without the final norm, and with it (timm's ``norm=True`` last map) the features."""
    model, _, arrays = load_case(case)
    expected = dict(np.load(GOLDEN / f"{case}_features.npz"))
    params = params_from_timm(state_dict(arrays, "timm"), model=model)
    run = jax.jit(lambda p, v: model.apply({"params": p}, v, method="forward_intermediates"))
    features, maps = run(params, images(arrays)[:1])
    last = len(model.depths) - 1
    assert len(maps) == last + 1
    for i, m in enumerate(maps[:-1]):
        np.testing.assert_allclose(m, expected[f"stage{i}_NHWC"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(maps[-1], expected["last_no_norm_NHWC"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(features, expected["features_NHWC"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(features, expected[f"stage{last}_NHWC"], atol=1e-4, rtol=0)


def test_fixtures_exercise_v2() -> None:
    """Some heads' logit scales are clamped and some not; shifted windows in two stages, a
    window equal to its map and one clamped below the configured window; pretrained windows
    that differ from the windows; the official layout carries V2's buffers."""
    model, _, arrays = load_case("swinv2_64")
    scales = np.concatenate([v.ravel() for k, v in arrays.items() if k.endswith("logit_scale")])
    assert (scales > math.log(100)).any() and (scales < math.log(100)).any()
    specs = model.stage_specs()
    assert sum(any(s.shift) for s in specs) >= 2
    assert any(s.window == s.resolution and not any(s.shift) for s in specs)
    assert any(s.window[0] < model.window_size for s in specs)
    official = official_state_dict(arrays)
    for buffer in ("relative_coords_table", "relative_position_index", "attn_mask"):
        assert any(k.endswith(buffer) for k in official), buffer
    assert "layers.0.downsample.reduction.weight" in official and "head.weight" in official
    for case in CASES:  # timm's own float32 error, well under the tolerance these tests use
        meta = json.loads((GOLDEN / f"{case}.json").read_text())
        assert max(meta["float32_noise"].values()) < 0.5e-4
    pretrained, _, _ = load_case("swinv2_pretrained")
    assert any(
        s.pretrained_window != s.window and s.pretrained_window[0] > 0
        for s in pretrained.stage_specs()
    )


def test_official_buffers_are_dropped_and_their_windows_read_back() -> None:
    """The saved coordinate tables tell the windows their coordinates were scaled by: the
    pretrained windows of the swinv2_pretrained fixture, per stage."""
    model, meta, arrays = load_case("swinv2_pretrained")
    _, report = convert_checkpoint(checkpoint(arrays, "official"), model)
    kinds = {k.rsplit(".", 1)[-1] for k in report.buffers}
    assert kinds == {"relative_coords_table", "relative_position_index", "attn_mask"}
    official = official_state_dict(arrays)
    for i, w in enumerate(meta["pretrained_window_sizes"]):
        table = official[f"layers.{i}.blocks.0.attn.relative_coords_table"]
        assert version._reference_window(table) == (w, w)


def load_resized(name: str) -> tuple[SwinTransformer, dict, dict, dict]:
    """(target model, meta, the resized fixture's arrays, the source fixture's arrays)."""
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    source = dict(np.load(GOLDEN / f"{meta['source']}.npz"))
    return v2_model(meta), meta, dict(np.load(GOLDEN / f"{name}.npz")), source


@pytest.mark.parametrize("case", RESIZED)
def test_resized_load_matches_timm(case: str) -> None:
    model, meta, arrays, source = load_resized(case)
    params, report = convert_checkpoint(checkpoint(source, "timm"), model)
    official, official_report = convert_checkpoint(checkpoint(source, "official"), model)
    flat = traverse_util.flatten_dict(official)
    for path, value in traverse_util.flatten_dict(params).items():
        np.testing.assert_array_equal(flat[path], value)
    # Only the patch embedding is ever adapted (V2's attention has nothing to resize), exactly
    # where timm's filter changed it; the official tables agree with the model's windows.
    assert [r.key for r in report.resized] == meta["changed"]
    assert [r.key for r in official_report.resized] == meta["changed"]
    assert set(meta["changed"]) <= {"patch_embed.proj.weight"}
    assert not (report.unused or report.missing or report.head_reset or official_report.notes)
    for r in report.resized:
        np.testing.assert_allclose(
            params["patch_embed"]["proj"]["kernel"].transpose(3, 2, 0, 1),
            arrays[f"adapted/{r.key}"],
            atol=1e-5,
            rtol=1e-5,
        )
    logits = logits_of(model, params, u8_to_input(arrays["input_NHWC_u8"]))
    np.testing.assert_allclose(logits, arrays["logits"], atol=1e-4, rtol=0)
    assert np.abs(arrays["logits"]).max() > 0.1


def test_other_window_without_pretrained_windows_is_noted() -> None:
    """The official checkpoint into a larger window whose coordinates are not scaled back to the
    checkpoint's: loaded (timm does the same), with a note naming the setting."""
    model, meta, _, source = load_resized("swinv2_32_to64")
    plain = model.clone(pretrained_window_sizes=())
    _, report = convert_checkpoint(checkpoint(source, "official"), plain)
    (note,) = report.notes
    assert "windows (4, 4, 4)" in note and "pretrained_window_sizes" in note
    assert "note: the checkpoint's position-bias coordinates" in format_report(report)
    _, timm_report = convert_checkpoint(checkpoint(source, "timm"), plain)
    assert not timm_report.notes  # timm's layout has no tables to read the windows from


@pytest.mark.parametrize("direction", ["v1_into_v2", "v2_into_v1"])
def test_other_family_is_refused_naming_the_fix(direction: str) -> None:
    v2, v2_meta, v2_arrays = load_case("swinv2_32")
    v1_meta = json.loads((GOLDEN / "swin32.json").read_text())
    if direction == "v1_into_v2":
        sd, model = state_dict(dict(np.load(GOLDEN / "swin32.npz")), "timm"), v2_model(v1_meta)
        pattern = r"checkpoint is Swin V1 .* but the model is Swin V2 .*version=2.*Fix: .*version=1"
    else:
        sd, model = state_dict(v2_arrays, "timm"), model_of(v2_meta)
        pattern = r"checkpoint is Swin V2 .*logit_scale.* but the model is Swin V1 .*version=2"
    with pytest.raises(CheckpointMismatchError, match=pattern):
        convert_checkpoint(sd, model)
    with pytest.raises(CheckpointMismatchError, match=pattern):
        load_pretrained(sd, model)


def test_same_family_mismatch_shows_v2_heads() -> None:
    _, meta, arrays = load_case("swinv2_32")
    wrong = v2_model(meta, num_heads=(2, 2, 4))
    with pytest.raises(CheckpointMismatchError, match=r"num_heads=\(1, 2, 4\) \(this model"):
        convert_checkpoint(state_dict(arrays, "timm"), wrong)


def test_hub_name_resolves_like_v1s(monkeypatch, tmp_path, no_network) -> None:
    """``hf-hub:timm/swinv2_...`` through the hub's cache (a stand-in huggingface_hub), offline,
    into a V2 model with a new head."""
    _, meta, arrays = load_case("swinv2_32")
    save_file(state_dict(arrays, "timm"), str(tmp_path / "model.safetensors"))
    calls = []

    def hf_hub_download(repo_id, filename, local_files_only=False):
        calls.append((repo_id, filename, local_files_only))
        return str(tmp_path / filename)

    hub = types.SimpleNamespace(hf_hub_download=hf_hub_download)
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    model = v2_model(meta, num_classes=3)
    params, report = load_pretrained(f"hf-hub:{HUB_MODEL}", model)
    assert calls == [(HUB_MODEL, "model.safetensors", True)] and not no_network
    assert report.head_reset == (10, 3) and "head" not in params
    assert load_state_dict(f"hf-hub:{HUB_MODEL}").keys() == state_dict(arrays, "timm").keys()


def test_preset_parameter_tree_is_timms() -> None:
    """A V2 preset's params, written as a timm state dict, have timm's keys for that model (the
    counts fixture's parameter total, and the V2 leaves by name)."""
    from swinjax.models import param_shapes
    from swinjax.weights.convert import _timm_key

    counts = json.loads((GOLDEN / "timm_counts.json").read_text())["presets"]
    shapes = traverse_util.flatten_dict(param_shapes(create_model("swinv2_cifar_t")))
    keys = {_timm_key(p) for p in shapes}
    assert sum(math.prod(s.shape) for s in shapes.values()) == counts["swinv2_cifar_t"]["params"]
    for leaf in ("q_bias", "v_bias", "logit_scale", "cpb_mlp.0.bias", "cpb_mlp.2.weight"):
        assert f"layers.0.blocks.0.attn.{leaf}" in keys
    assert "layers.1.downsample.norm.weight" in keys and "head.fc.weight" in keys
