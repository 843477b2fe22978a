"""Data as users have it, end to end: offline download failure from the command line, a folder
of the user's own images of several sizes, the device-side resize, memory == stream, streaming
resume, model fields on the command line, normalization."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from swinjax import data, errors
from swinjax.augment import transforms
from swinjax.config import build_model, input_size
from swinjax.models import create_model
from swinjax.training import checkpoint, evaluation, steps, trainer
from swinjax.training import state as state_lib
from swinjax.training import workdir as workdir_lib
from tests.conftest import REPO, make_tiny_config

PY = [sys.executable, "-m", "swinjax.train", "--config", str(REPO / "experiments/demo.py")]


def _run(args, env_extra=None, timeout=300):
    env = {**os.environ, "SWINJAX_RUNTIME_TUNING": "0", **(env_extra or {})}
    return subprocess.run(
        PY + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_offline_download_fails_fast_with_status_2(tmp_path) -> None:
    """download on (the default), a proxy that refuses: exit 2 and the message, in seconds."""
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens
    out = _run(
        [
            f"--workdir={tmp_path / 'w'}",
            "--config.dataset=cifar100",
            f"--config.data_dir={tmp_path}",
        ],
        {"HTTPS_PROXY": closed, "HTTP_PROXY": closed, "https_proxy": closed, "http_proxy": closed},
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "error: dataset 'cifar100'" in out.stderr
    assert "download hosts cannot be reached (127.0.0.1:9" in out.stderr
    assert "--config.data_dir" in out.stderr
    assert not (tmp_path / "w").exists()  # nothing written


@pytest.mark.slow
def test_model_fields_on_the_command_line(tmp_path) -> None:
    ok = _run(
        [f"--workdir={tmp_path / 'ok'}", "--config.model_kwargs.window_size=8",
         "--config.max_steps=2", "--config.progress_bar=False", "--config.test_split="]
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert workdir_lib.load_config(tmp_path / "ok").model_kwargs.window_size == 8
    typo = _run([f"--workdir={tmp_path / 'typo'}", "--config.model_kwargs.windw_size=8"])
    assert typo.returncode == 2
    assert "--config.model_kwargs.windw_size: no such config key; did you mean " in typo.stderr
    assert "--config.model_kwargs.window_size?" in typo.stderr
    assert "Traceback" not in typo.stderr and not (tmp_path / "typo").exists()


def _image_folder(root, sizes=((20, 24), (32, 28), (40, 40), (18, 30))):
    """root/{train,test}/{cat,dog,emu}/*.jpg: PIL images of four sizes, 3 classes whose colour
    is learnable; 24 train and 9 test images."""
    rng = np.random.default_rng(0)
    colours = {"cat": (200, 40, 40), "dog": (40, 200, 40), "emu": (40, 40, 200)}
    counts = {"train": 8, "test": 3}
    for split, n in counts.items():
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                h, w = sizes[i % len(sizes)]
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (h, w, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.jpg")
    return sum(counts.values()) * 3


@pytest.mark.slow
def test_image_folder_trains_and_evaluates_every_example(tmp_path) -> None:
    _image_folder(tmp_path / "pets")
    config = make_tiny_config(
        dataset=f"imagefolder:{tmp_path / 'pets'}",
        train_split="train[:75%]",
        val_split="train[75%:]",
        test_split="test",
        batch_size=6,
        eval_batch_size=4,
        augment="flip",
    )
    config.model_kwargs.img_size = 16  # images of 18-40 px: random-resized crops to 16x16
    result = trainer.train_and_evaluate(config, tmp_path / "run")
    assert result["test"]["num_examples"] == 9  # every test image counted, padding masked
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 2 and all(np.isfinite(e["val_loss"]) for e in epochs)
    saved = workdir_lib.load_config(tmp_path / "run")
    split = data.load_split(saved, "train[75%:]", input_size(saved))
    assert split.class_names == ("cat", "dog", "emu") and split.num_examples == 6
    assert split.image_shape == (16, 16, 3)
    assert result["step"] == 2 * (18 // 6)


def test_image_folder_class_subsets_stream_and_a_split_folder_is_named(tmp_path) -> None:
    _image_folder(tmp_path / "pets")
    config = make_tiny_config(dataset=f"imagefolder:{tmp_path / 'pets'}", classes="2,0")
    config.model_kwargs.img_size = 16
    split = data.load_split(config, "train", input_size(config))  # streamed: varying sizes
    assert isinstance(split, data.StreamedSplit)
    assert (split.num_classes, split.class_names, split.num_examples) == (2, ("emu", "cat"), 16)
    assert split.name.endswith("train{classes 2,0}")
    rows = [(b["image"], b["label"], b["mask"]) for b in split.eval_batches(16)]
    labels = np.concatenate([label[mask > 0] for _, label, mask in rows])
    images = np.concatenate([image[mask > 0] for image, _, mask in rows])
    assert sorted(labels.tolist()) == [0] * 8 + [1] * 8
    # The class colours (emu blue, cat red) come through the renumbering: 0 is emu, 1 is cat.
    mean_colour = {y: images[labels == y].reshape(-1, 3).mean(0) for y in (0, 1)}
    assert mean_colour[0][2] > mean_colour[0][0] and mean_colour[1][0] > mean_colour[1][2]
    # A split folder given as the root: the message says what ROOT must hold, and the fix.
    slip = make_tiny_config(dataset=f"imagefolder:{tmp_path / 'pets' / 'train'}")
    with pytest.raises(errors.DatasetNotFoundError) as err:
        data.load_split(slip, "train", (16, 16))
    message = str(err.value)
    assert "ROOT must hold train/ (and optionally val/, test/)" in message
    assert "looks like a split folder" in message and "is it prepared" not in message
    assert f"--config.dataset=imagefolder:{tmp_path / 'pets'}" in message


def test_fixed_size_images_are_resized_on_the_device_to_the_model() -> None:
    config = make_tiny_config(augment="none")
    model = create_model("tiny_test", img_size=32)  # 16x16 data, a 32x32 model
    state = state_lib.create_train_state(config, model, steps_per_epoch=4)
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    batch = {"image": jnp.asarray(images), "label": jnp.arange(4)}
    x = steps._inputs(state, batch["image"])
    assert x.shape == (4, 32, 32, 3) and x.dtype == jnp.float32
    np.testing.assert_allclose(x.mean(), images.mean() / 255, rtol=1e-3)  # a resize, not a crop
    flat = steps._inputs(state, jnp.full((1, 16, 16, 3), 51, jnp.uint8))
    np.testing.assert_allclose(flat, 0.2, atol=1e-6)  # a constant image stays constant
    logits = steps.predict(state, batch["image"])
    assert logits.shape == (4, 10)
    state, metrics = steps.train_step(state, batch)
    assert np.isfinite(float(metrics["loss"]))
    bicubic = transforms.resize(jnp.asarray(images, jnp.float32), (32, 32), "bicubic")
    assert bicubic.shape == (4, 32, 32, 3) and not np.allclose(bicubic, x * 255, atol=1e-3)
    with pytest.raises(ValueError, match="resize method 'nearest' is not one of"):
        transforms.resize(x, (8, 8), "nearest")


def test_normalize_modes() -> None:
    assert transforms.normalization("", "cifar10", (), ()) == ((), ())
    mean, std = transforms.normalization("imagenet", "whatever", (), ())
    assert mean == (0.485, 0.456, 0.406) and std == (0.229, 0.224, 0.225)
    assert transforms.normalization("dataset", "cifar100:3.0.2", (), ())[0][0] == 0.5071
    with pytest.raises(ValueError, match="no statistics known for 'pets'"):
        transforms.normalization("dataset", "pets", (), ())
    with pytest.raises(ValueError, match="both set"):
        transforms.normalization("imagenet", "x", (0.5,), (0.5,))
    state = state_lib.create_train_state(
        make_tiny_config(normalize="imagenet"), create_model("tiny_test"), steps_per_epoch=1
    )
    assert state.mean == (0.485, 0.456, 0.406)


def _stream_config(tiny, **overrides):
    base = dict(dataset=tiny.name, data_dir=tiny.data_dir, batch_size=30, eval_batch_size=16)
    return make_tiny_config(**{**base, **overrides})


@pytest.mark.slow
def test_memory_and_stream_score_a_checkpoint_alike(tmp_path, tiny_tfds_dir) -> None:
    config = _stream_config(tiny_tfds_dir, num_epochs=1, input_pipeline="memory")
    trainer.train_and_evaluate(config, tmp_path)
    template = state_lib.create_train_state(
        config, build_model(config, data.load_split(config, "test")), steps_per_epoch=1
    )
    state, _ = checkpoint.Checkpointer(tmp_path, read_only=True).restore_latest(template)
    scores = {}
    for pipeline in ("memory", "stream"):
        split = data.load_split(_stream_config(tiny_tfds_dir, input_pipeline=pipeline), "test")
        scores[pipeline] = evaluation.evaluate(state, split, 16)
    assert type(data.load_split(_stream_config(tiny_tfds_dir, input_pipeline="stream"), "test"))
    assert scores["memory"]["num_examples"] == scores["stream"]["num_examples"] == 70
    for k in ("loss", "top1", "top5"):
        np.testing.assert_allclose(scores["memory"][k], scores["stream"][k], rtol=1e-5)


def test_streaming_run_resumed_mid_epoch_equals_uninterrupted(tmp_path, tiny_tfds_dir) -> None:
    straight = _stream_config(tiny_tfds_dir, input_pipeline="stream", test_split="")
    trainer.train_and_evaluate(straight, tmp_path / "straight")
    interrupted = _stream_config(
        tiny_tfds_dir, input_pipeline="stream", test_split="", max_steps=13
    )  # 9 steps an epoch (270 of 300 examples at batch 30): step 13 is mid epoch 2
    first = trainer.train_and_evaluate(interrupted, tmp_path / "resumed")
    assert first["stopped_by"] == "max_steps" and first["step"] == 13
    trainer.train_and_evaluate(straight, tmp_path / "resumed")
    a = _state(tmp_path / "straight")
    b = _state(tmp_path / "resumed")
    assert int(a.step) == int(b.step) == 18
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)  # bitwise on the CPU


def _state(workdir):
    config = workdir_lib.load_config(workdir)
    split = data.load_split(config, config.train_split)
    template = state_lib.create_train_state(config, build_model(config, split), steps_per_epoch=1)
    state, _ = checkpoint.Checkpointer(workdir, read_only=True).restore_latest(template)
    return state
