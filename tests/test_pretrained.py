"""Pretrained weights from files (.npz, .safetensors, .pth) and hf-hub:, offline and without torch:
round trips, the load report, and the errors (missing file, another architecture, no network, no
torch, no huggingface_hub) with their fixes."""

from __future__ import annotations

import json
import sys
import types

import jax
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import save_file

from swinjax.errors import CheckpointMismatchError, DownloadError, MissingDependencyError
from swinjax.models import param_shapes
from swinjax.weights import load as weights_load
from swinjax.weights.convert import params_from_timm, params_to_timm
from swinjax.weights.load import format_report, load_pretrained, load_state_dict
from tests.test_convert import GOLDEN, model_of, state_dict

HUB_MODEL = "timm/swin_tiny_patch4_window7_224.ms_in1k"


@pytest.fixture(scope="module")
def swin32() -> tuple[dict, dict]:
    """(the swin32 fixture's config, its timm-layout state dict)."""
    meta = json.loads((GOLDEN / "swin32.json").read_text())
    return meta, state_dict(dict(np.load(GOLDEN / "swin32.npz")), "timm")


def assert_same_tree(a: dict, b: dict) -> None:
    fa, fb = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
    assert fa.keys() == fb.keys()
    for k, v in fa.items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(fb[k]))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_file_round_trip(tmp_path, swin32, suffix: str) -> None:
    meta, sd = swin32
    path = tmp_path / f"swin32{suffix}"
    if suffix == ".npz":
        np.savez(path, **sd)
    else:
        save_file(sd, str(path))
    loaded = load_state_dict(path)
    assert loaded.keys() == sd.keys()
    for k, v in sd.items():
        np.testing.assert_array_equal(loaded[k], v)
    model = model_of(meta)
    params, report = load_pretrained(str(path), model)
    assert_same_tree(params, params_from_timm(sd, model=model))
    assert len(report.loaded) == len(sd) and not (report.resized or report.missing)
    assert report.source == str(path) and report.head_reset is None


def test_report_of_a_resized_load_with_a_new_head(swin32) -> None:
    meta, sd = swin32
    model = model_of(meta, img_size=64, window_size=8, num_classes=100)
    init = jax.tree.map(lambda s: np.full(s.shape, 7.0, s.dtype), param_shapes(model))
    params, report = load_pretrained(sd, model, init_params=init)

    tables = [k for k in sd if k.endswith("relative_position_bias_table")]
    assert [r.key for r in report.resized] == tables
    first = report.resized[0]
    assert (first.from_shape, first.to_shape, first.how) == ((49, 2), (225, 2), "window 8x8")
    assert sorted(report.unused) == sorted(report.missing) == ["head.fc.bias", "head.fc.weight"]
    assert report.head_reset == (10, 100)
    assert len(report.loaded) == len(sd) - len(tables) - 2
    # The head comes from init_params, everything else from the checkpoint.
    assert (params["head"]["fc"]["kernel"] == 7.0).all()
    np.testing.assert_array_equal(params["norm"]["scale"], sd["norm.weight"])

    text = format_report(report)
    assert "head re-initialised (10 -> 100 classes)" in text
    assert (
        "resized layers.0.blocks.*.attn.relative_position_bias_table (x2): (49, 2) -> (225, 2) "
        "(window 8x8)"
    ) in text
    assert f"{len(sd) - 8} tensors loaded as they are, 6 resized, 2 initialised" in text
    assert "unused" not in text  # the head line covers the head's tensors


def test_reset_head_on_request_and_headless_checkpoints(swin32) -> None:
    meta, sd = swin32
    params, report = load_pretrained(sd, model_of(meta), reset_head=True)
    assert "head" not in params and report.head_reset == (10, 10)
    headless = {k: v for k, v in sd.items() if not k.startswith("head.")}
    _, report = load_pretrained(headless, model_of(meta))
    assert report.head_reset == (None, 10) and not report.unused
    assert "head initialised (the checkpoint has none; 10 classes)" in format_report(report)
    _, report = load_pretrained(sd, model_of(meta, num_classes=0))
    assert report.head_reset == (10, 0) and not report.missing
    assert sorted(report.unused) == ["head.fc.bias", "head.fc.weight"]
    assert "dropped: the model has no classifier" in format_report(report)


def test_skip_initialises_an_absolute_position_embedding(swin32) -> None:
    meta, sd = swin32
    with pytest.raises(CheckpointMismatchError, match=r"missing: 'absolute_pos_embed'"):
        load_pretrained(sd, model_of(meta, ape=True))
    _, report = load_pretrained(sd, model_of(meta, ape=True), skip=("absolute_pos_embed",))
    assert report.missing == ["absolute_pos_embed"]
    assert "initialised (not in the checkpoint): absolute_pos_embed" in format_report(report)


def test_another_architecture_raises_naming_the_key(swin32) -> None:
    meta, sd = swin32
    with pytest.raises(
        CheckpointMismatchError, match=r"missing: 'layers\.1\.blocks\.2\..*\(and 21 more\)"
    ):
        load_pretrained(sd, model_of(meta, depths=(2, 4, 2)))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected: 'layers\.2\.blocks\.0\.norm1"):
        load_pretrained(sd, model_of(meta, depths=(2, 2, 0)))
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch for 'patch_embed\.proj\.w"):
        load_pretrained(sd, model_of(meta, embed_dim=32))


def test_another_architecture_shows_a_few_keys_the_counts_and_what_differs(swin32) -> None:
    """Not one line naming every key: the first five of each kind in the network's order, how
    many there are, the architecture fields the checkpoint shows otherwise, and the fix."""
    meta, sd = swin32
    model = model_of(meta, embed_dim=32, depths=(2, 4, 2), num_heads=(2, 4, 4))
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), param_shapes(model))
    shapes = {k: v.shape for k, v in params_to_timm(zeros).items()}
    missing = sorted(shapes.keys() - sd.keys())  # stage 1's blocks 2 and 3
    # Of another width: all but stage 0's and 1's position-bias tables (the same heads); the
    # head is left for re-initialisation.
    mismatches = sum(
        shapes[k] != v.shape for k, v in sd.items() if k in shapes and not k.startswith("head.")
    )
    with pytest.raises(CheckpointMismatchError) as error:
        load_pretrained(sd, model)
    lines = str(error.value).splitlines()
    assert lines[0] == f"the checkpoint does not fit the model: {len(missing)} missing, " + (
        f"{mismatches} shape mismatches"
    )
    assert lines[1].startswith("  missing: 'layers.1.blocks.2.")
    assert lines[1].count("'") == 2 * 5 and lines[1].endswith(f"(and {len(missing) - 5} more)")
    assert lines[2:7] == [  # in timm's layout, the model's too
        "  shape mismatch for 'patch_embed.proj.weight': checkpoint (24, 3, 2, 2), model "
        "(32, 3, 2, 2)",
        "  shape mismatch for 'patch_embed.proj.bias': checkpoint (24,), model (32,)",
        "  shape mismatch for 'patch_embed.norm.weight': checkpoint (24,), model (32,)",
        "  shape mismatch for 'patch_embed.norm.bias': checkpoint (24,), model (32,)",
        "  shape mismatch for 'layers.0.blocks.0.norm1.weight': checkpoint (24,), model (32,)",
    ]
    assert lines[7] == f"  (and {mismatches - 5} more shape mismatches)"
    assert lines[8] == (
        "The checkpoint is another architecture: embed_dim=24 (this model: 32); "
        "depths=(2, 2, 2) (this model: (2, 4, 2)); num_heads=(2, 4, 8) (this model: (2, 4, 4))."
    )
    assert lines[9].startswith("Fix: build the model the checkpoint was trained with")


def test_missing_file_and_unknown_format(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "swin.safetensors"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_pretrained(str(missing), model_of(json.loads((GOLDEN / "swin32.json").read_text())))
    with pytest.raises(ValueError, match=r"unknown checkpoint format.*\.safetensors"):
        load_state_dict(tmp_path / "weights.ckpt")


def test_hub_without_network_fails_fast_naming_the_fix(monkeypatch, tmp_path, no_network) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached
    for var in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DownloadError) as e:
        load_state_dict(f"hf-hub:{HUB_MODEL}")
    message = str(e.value)
    assert f"hf-hub:{HUB_MODEL}" in message and "cannot be reached" in message
    assert f"https://huggingface.co/{HUB_MODEL}/resolve/main/model.safetensors" in message
    assert "pass its path" in message
    assert no_network  # the probe tried, and was refused at once


def test_hub_offline_setting_needs_no_probe(monkeypatch, tmp_path, no_network) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        load_state_dict(f"hf-hub:{HUB_MODEL}")
    assert not no_network


def test_hub_without_huggingface_hub_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import` raises ImportError
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights_load, "unreachable_hosts", lambda urls: [])  # as if online
    with pytest.raises(MissingDependencyError, match=r"pip install 'swinjax\[hub\]'"):
        load_state_dict(f"hf-hub:{HUB_MODEL}")


@pytest.mark.parametrize("suffix", weights_load.TORCH_SUFFIXES)
def test_pytorch_file_without_torch_names_the_extra(monkeypatch, tmp_path, suffix: str) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    path = tmp_path / f"swin{suffix}"
    path.write_bytes(b"not read")
    with pytest.raises(MissingDependencyError, match=r"pip install 'swinjax\[torch\]'") as e:
        load_state_dict(path)
    assert str(path) in str(e.value)


def test_hub_checkpoint_in_the_cache_loads_offline(monkeypatch, tmp_path, swin32, no_network):
    """With huggingface_hub (a stand-in here), a cached file is used without any network."""
    _, sd = swin32
    save_file(sd, str(tmp_path / "model.safetensors"))
    calls = []

    def hf_hub_download(repo_id, filename, local_files_only=False):
        calls.append((repo_id, filename, local_files_only))
        return str(tmp_path / filename)

    hub = types.SimpleNamespace(hf_hub_download=hf_hub_download)
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    loaded = load_state_dict(f"hf-hub:{HUB_MODEL}")
    assert loaded.keys() == sd.keys()
    assert calls == [(HUB_MODEL, "model.safetensors", True)] and not no_network


def test_pytorch_file_is_read_with_weights_only(monkeypatch, tmp_path, swin32) -> None:
    """The torch path with a stand-in torch: weights_only on the CPU, the "model" wrapper of
    official checkpoints unwrapped, bfloat16 widened to float32 (numpy has no bfloat16)."""
    _, sd = swin32

    class Tensor:
        def __init__(self, a, dtype="float32"):
            self.a, self.dtype = a, dtype

        def float(self):
            return Tensor(self.a.astype(np.float32))

        def numpy(self):
            assert self.dtype != "bfloat16", "numpy() of a bfloat16 tensor fails in torch"
            return self.a

    calls = []

    def load(path, **kwargs):
        calls.append(kwargs)
        tensors = {
            k: Tensor(v, "bfloat16" if k == "norm.weight" else "float32") for k, v in sd.items()
        }
        return {"model": tensors, "epoch": 3}

    fake = types.SimpleNamespace(load=load, Tensor=Tensor, bfloat16="bfloat16")
    monkeypatch.setitem(sys.modules, "torch", fake)
    path = tmp_path / "swin.pth"
    path.write_bytes(b"stand-in")
    loaded = load_state_dict(path)
    assert calls == [{"map_location": "cpu", "weights_only": True}]
    assert loaded.keys() == sd.keys()
    np.testing.assert_array_equal(loaded["norm.weight"], sd["norm.weight"])
