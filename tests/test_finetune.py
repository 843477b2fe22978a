"""Fine-tuning recipe features: layer-wise learning-rate decay (timm's Swin grouping), freezing,
class subsets; all array hyperparameters, so sweeps over them compile once."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from swinjax import data, export
from swinjax.models import create_model, param_shapes
from swinjax.optim import adamw, param_groups
from swinjax.training import state as state_lib
from swinjax.training import steps, workdir
from tests.conftest import REPO, make_tiny_config

MODEL = create_model("tiny_test")  # depths (2, 2)


def _batch(n=16):
    key = jax.random.key(0)
    images = jax.random.randint(key, (n, 16, 16, 3), 0, 256).astype(jnp.uint8)
    return {"image": images, "label": jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, 10)}


def _state(**overrides):
    base = dict(augment="none", weight_decay=0.0, learning_rate=1e-3, schedule="constant",
                warmup_epochs=0.0)  # fmt: skip
    return state_lib.create_train_state(
        make_tiny_config(**{**base, **overrides}), MODEL, steps_per_epoch=10
    )


def test_layer_ids_follow_timms_swin_grouping() -> None:
    ids, num_layers = param_groups.layer_ids(param_shapes(MODEL))
    by_prefix = {"/".join(p): i for p, i in ids.items()}

    def layer(prefix):
        found = {i for name, i in by_prefix.items() if name.startswith(prefix)}
        assert len(found) == 1, (prefix, found)
        return found.pop()

    # stem 0; stage 0's blocks 1, 2; stage 1's merging with its block 0 in 3, block 1 in 4;
    # the final norm with the last block; the head last.
    assert layer("patch_embed/") == 0
    assert (layer("layers_0/blocks_0/"), layer("layers_0/blocks_1/")) == (1, 2)
    assert layer("layers_1/downsample/") == layer("layers_1/blocks_0/") == 3
    assert layer("layers_1/blocks_1/") == layer("norm/") == 4
    assert layer("head/") == 5 and num_layers == 6
    swin_t = param_groups.layer_ids(param_shapes(create_model("swin_t")))
    assert swin_t[1] == 1 + 12 + 1  # stem, 12 blocks, head


def test_each_layer_learns_at_its_decayed_rate() -> None:
    """Adam's first step moves every weight by lr * scale (g / |g| = sign g): the largest move in
    each parameter is its layer's learning rate."""
    decay = 0.5
    state = _state(layer_decay=decay)
    before = traverse_util.flatten_dict(jax.device_get(state.params))
    state, _ = steps.train_step(state, _batch())
    after = traverse_util.flatten_dict(jax.device_get(state.params))
    ids, num_layers = param_groups.layer_ids(state.params)
    for path, layer in ids.items():
        moved = np.abs(after[path] - before[path]).max()
        want = 1e-3 * decay ** (num_layers - 1 - layer)
        # within 2%: a tiny gradient (|g| ~ eps) moves less; a wrong layer is off by 2x
        np.testing.assert_allclose(moved, want, rtol=2e-2, err_msg="/".join(path))


def test_frozen_parameters_do_not_change() -> None:
    state = _state(freeze="backbone", learning_rate=1e-2)
    before = traverse_util.flatten_dict(jax.device_get(state.params))
    batch = _batch()
    for _ in range(3):
        state, metrics = steps.train_step(state, batch)
    after = traverse_util.flatten_dict(jax.device_get(state.params))
    for path in before:
        if path[0] == "head":
            assert not np.array_equal(before[path], after[path]), path
        else:
            np.testing.assert_array_equal(before[path], after[path], err_msg="/".join(path))
    regex = _state(freeze=r"layers_0/, patch_embed")
    flat = traverse_util.flatten_dict(regex.trainable)
    assert {p[0] for p, t in flat.items() if float(t) == 0.0} == {"layers_0", "patch_embed"}


def test_sweeping_layer_decay_and_freeze_compiles_once() -> None:
    batch = _batch()
    sizes = []
    for overrides in (dict(layer_decay=1.0), dict(layer_decay=0.75, freeze="backbone")):
        state, _ = steps.train_step(_state(**overrides), batch)
        sizes.append(steps.train_step._cache_size())
    assert sizes[0] == sizes[1]


def test_bad_freeze_and_layer_decay_are_named() -> None:
    with pytest.raises(ValueError, match=r"'blocks_9' matches no parameter; paths look like"):
        _state(freeze="blocks_9")
    with pytest.raises(ValueError, match="is not a regular expression"):
        param_groups.parse_freeze("layers_(")
    with pytest.raises(ValueError, match=r"config.layer_decay=0.0: must be in \(0, 1\]"):
        adamw.validate_optim_config(make_tiny_config(layer_decay=0.0))


def test_class_subsets_renumber_labels_and_keep_names() -> None:
    config = make_tiny_config(classes="7,2,5")
    full = data.load_split(make_tiny_config(), "train")
    subset = data.load_split(config, "train")
    assert subset.num_classes == 3
    assert subset.class_names == ("class_7", "class_2", "class_5")
    keep = np.isin(full.labels_E, [7, 2, 5])
    np.testing.assert_array_equal(subset.images_EHWC, full.images_EHWC[keep])
    mapping = {7: 0, 2: 1, 5: 2}
    np.testing.assert_array_equal(subset.labels_E, [mapping[c] for c in full.labels_E[keep]])
    for bad, message in (("1,1", "distinct"), ("a", "class indices"), ("3,99", "out of range")):
        with pytest.raises(ValueError, match=message):
            data.load_split(make_tiny_config(classes=bad), "train")


# ------------------------------------------------------------------------- starting from weights


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A tiny_test run on classes 0-4 at 16x16 / window 4: the weights to start from."""
    from swinjax.training import trainer

    workdir = tmp_path_factory.mktemp("source")
    trainer.train_and_evaluate(make_tiny_config(num_epochs=1, classes="0,1,2,3,4"), workdir)
    return workdir


def _target(source, **overrides):
    config = make_tiny_config(num_epochs=1, classes="5,6,7,8", init_from=str(source), **overrides)
    config.model_kwargs.img_size = 32  # 32x32 inputs (resized on the device), window 8
    config.model_kwargs.window_size = 8
    return config


def _params(workdir):
    from swinjax.training import checkpoint

    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    return traverse_util.flatten_dict(ckpt.restore_params(ckpt.all_steps()[-1]))


@pytest.mark.slow
def test_init_from_a_workdir_at_another_size_with_a_new_head(
    tmp_path, source_run, capsys, monkeypatch
) -> None:
    from swinjax import weights
    from swinjax.training import trainer

    loaded = []
    real = weights.load_pretrained
    monkeypatch.setattr(
        weights, "load_pretrained", lambda *a, **k: loaded.append(1) or real(*a, **k)
    )
    config = _target(source_run, max_steps=1, learning_rate=1e-9)  # one step: barely moves
    trainer.train_and_evaluate(config, tmp_path)
    out = capsys.readouterr().out
    assert f"pretrained weights from {source_run}" in out
    assert "relative_position_bias_table (x2): (49, 2) -> (225, 2) (window 8x8)" in out
    assert "head re-initialised (5 -> 4 classes)" in out
    src, dst = _params(source_run), _params(tmp_path)
    kernel = ("patch_embed", "proj", "kernel")
    np.testing.assert_allclose(dst[kernel], src[kernel], atol=1e-6)  # loaded as it was
    assert dst[("head", "fc", "kernel")].shape == (32, 4)
    table = ("layers_0", "blocks_0", "attn", "relative_position_bias_table")
    assert src[table].shape == (49, 2) and dst[table].shape == (225, 2)
    # Resuming the fine-tuning run restores its own checkpoint: init_from is not read again.
    trainer.train_and_evaluate(_target(source_run, max_steps=3, learning_rate=1e-9), tmp_path)
    assert len(loaded) == 1 and "pretrained weights" not in capsys.readouterr().out


def test_init_from_errors_are_named(tmp_path, source_run) -> None:
    from swinjax.errors import CheckpointMismatchError
    from swinjax.training import trainer

    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        trainer.train_and_evaluate(_target(tmp_path / "nothing.safetensors"), tmp_path / "a")
    other = _target(source_run)
    other.model_kwargs.embed_dim = 32  # another architecture
    with pytest.raises(CheckpointMismatchError, match=r"patch_embed\.proj\.weight") as error:
        trainer.train_and_evaluate(other, tmp_path / "b")
    # A few mismatches, the counts, the field that differs and the fix; not every key.
    message = str(error.value)
    assert "embed_dim=16 (this model: 32)" in message and "Fix: build the model" in message
    assert message.count("shape mismatch for") == 5 and "more shape mismatches)" in message
    assert len(message) < 2000
    with pytest.raises(ValueError, match="init_head='reset' needs config.init_from"):
        trainer.train_and_evaluate(make_tiny_config(init_head="reset"), tmp_path / "c")


# ------------------------------------------- a Swin V2 checkpoint fine-tuned at another window

V2_WINDOW_ARGS = (  # tiny_test as V2 (16 px, window 4) -> 32 px, window 8; coordinates as at 4
    "--config.model_kwargs.version=2",
    "--config.model_kwargs.img_size=32",
    "--config.model_kwargs.window_size=8",
    "--config.model_kwargs.pretrained_window_sizes=(4,4)",
)


@pytest.fixture(scope="module")
def v2_timm_file(tmp_path_factory):
    """A timm-layout Swin V2 state dict (tiny_test as V2, random weights) as safetensors: what
    timm's ``model.state_dict()`` saves, without its non-persistent buffers."""
    from safetensors.numpy import save_file

    from swinjax import weights

    model = create_model("tiny_test", version=2)
    params = jax.jit(model.init)(jax.random.key(3), jnp.zeros((1, 16, 16, 3)))["params"]
    params = jax.tree.map(lambda p: p + 0.1, params)  # post-norms off zero: no identity blocks
    state_dict = weights.params_to_timm(params)
    path = tmp_path_factory.mktemp("v2") / "swinv2_tiny_test.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, str(path))
    return path, state_dict


def test_a_v2_checkpoint_loads_at_another_window_with_its_coordinates_recomputed(
    v2_timm_file,
) -> None:
    from swinjax import weights

    path, state_dict = v2_timm_file
    model = create_model(
        "tiny_test", version=2, img_size=32, window_size=8, pretrained_window_sizes=(4, 4)
    )
    params, report = weights.load_pretrained(str(path), model)
    assert sorted(report.loaded) == sorted(state_dict)  # every tensor as it is: none is sized
    assert not (report.resized or report.missing or report.unused or report.head_reset)
    summary = weights.format_report(report)
    assert f"{len(state_dict)} tensors loaded as they are, 0 resized, 0 initialised" in summary
    assert (
        "recomputed: position-bias coordinates computed for windows (8, 8), scaled by (4, 4) "
        "(pretrained_window_sizes (4, 4))" in summary
    )
    cpb = ("layers_1", "blocks_0", "attn", "cpb_mlp_0", "kernel")
    flat = traverse_util.flatten_dict(params)
    np.testing.assert_array_equal(
        flat[cpb], state_dict["layers.1.blocks.0.attn.cpb_mlp.0.weight"].T
    )
    # Without pretrained_window_sizes the model's own windows scale the coordinates.
    own = create_model("tiny_test", version=2, img_size=32, window_size=8)
    _, plain = weights.load_pretrained(str(path), own)
    assert "scaled by (8, 8) (pretrained_window_sizes () (each stage's window))" in (
        plain.coordinates
    )


@pytest.mark.slow
def test_v2_fine_tuning_at_another_window_through_the_command_line(tmp_path, v2_timm_file) -> None:
    path, state_dict = v2_timm_file
    cmd = [sys.executable, "-m", "swinjax.train", "--config", str(REPO / "experiments/demo.py")]
    cmd += ["--workdir", str(tmp_path / "run"), f"--config.init_from={path}", *V2_WINDOW_ARGS]
    cmd += ["--config.max_steps=3", "--config.batch_size=8", "--config.progress_bar=False"]
    cmd += ["--config.log_every_steps=1", "--config.val_split=", "--config.test_split="]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (
        f"pretrained weights from {path} (timm layout): {len(state_dict)} tensors loaded as they "
        "are, 0 resized, 0 initialised" in out.stdout
    )
    assert "windows (8, 8), scaled by (4, 4) (pretrained_window_sizes (4, 4))" in out.stdout
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    losses = [r["loss"] for r in records if r["kind"] == "train_step"]
    assert len(losses) == 3 and all(np.isfinite(losses))
    saved = workdir.load_config(tmp_path / "run").model_kwargs  # what eval and export rebuild
    assert (saved.window_size, tuple(saved.pretrained_window_sizes)) == (8, (4, 4))
    logit_scale = ("layers_0", "blocks_0", "attn", "logit_scale")
    assert _params(tmp_path / "run")[logit_scale].shape == (2, 1, 1)  # a V2 model was trained
    # Resumed (the saved config equals the command line's, tuples as JSON lists) without
    # reading init_from again; exported as timm's V2 with the windows it was fine-tuned at.
    more = [a.replace("max_steps=3", "max_steps=4") for a in cmd]
    again = subprocess.run(more, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "pretrained weights" not in again.stdout
    assert json.loads(again.stdout.splitlines()[-1])["step"] == 4
    exported = tmp_path / "timm"
    argv = ["swinjax.export", "--ckpt", str(tmp_path / "run"), "--out", str(exported)]
    assert export.main([*argv, "--format", "timm"]) == 0
    args = json.loads((exported / "config.json").read_text())["model_args"]
    assert (args["window_size"], args["pretrained_window_sizes"]) == (8, [4, 4])
