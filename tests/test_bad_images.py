"""Unreadable files in an image folder (config.bad_images): screened before the first step, left
out ('skip', listed in WORKDIR/bad_images.txt) or refused ('fail', exit 2, naming them); a file
that goes bad while a split streams is named, not a TensorFlow traceback; a resumed run over a
folder with bad files equals an uninterrupted one."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from swinjax import config as config_lib
from swinjax import data, errors
from swinjax import eval as eval_cli
from swinjax import train as train_cli
from swinjax.data import screening, stream
from swinjax.data.preprocess import HostPreprocess
from swinjax.training import checkpoint, trainer
from swinjax.training import workdir as workdir_lib
from tests.conftest import REPO, make_tiny_config

PRE16 = HostPreprocess(output_size=(16, 16))
DEMO = str(REPO / "experiments" / "demo.py")


def _photo_folder(root: Path, per_class: int = 40, num_classes: int = 3) -> tuple[Path, Path]:
    """The issue's folder: root/train/class_<k>/ with ``per_class`` good images each (JPEG and
    PNG, 16-24 px), one truncated JPEG (class_0) and a text file named notes.jpg (class_1).
    Returns (truncated, notes)."""
    rng = np.random.default_rng(0)
    for k in range(num_classes):
        folder = root / "train" / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = rng.integers(16, 25, 2)
            pixels = np.clip(60 * k + rng.normal(60, 40, (h, w, 3)), 0, 255).astype(np.uint8)
            suffix = "png" if i % 4 == 0 else "jpg"
            Image.fromarray(pixels).save(folder / f"{i:03d}.{suffix}")
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buffer, "JPEG")
    truncated = root / "train" / "class_0" / "cut_short.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    notes = root / "train" / "class_1" / "notes.jpg"
    notes.write_text("shopping list: milk, eggs\n")
    return truncated, notes


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("photos")
    return (root, *_photo_folder(root))


@pytest.fixture(autouse=True)
def _fresh_screening():
    screening.clear_cache()
    yield
    screening.clear_cache()


def _argv(root: Path, workdir: Path, *extra: str) -> list[str]:
    return [
        "swinjax.train",
        "--config",
        DEMO,
        "--workdir",
        str(workdir),
        f"--config.dataset=imagefolder:{root}",
        "--config.train_split=train",  # the whole folder: both bad files
        "--config.val_split=",
        "--config.test_split=",
        "--config.num_epochs=1",
        "--config.progress_bar=False",
        *extra,
    ]


# ------------------------------------------------------------------------------- screening


def test_screening_names_both_files_once_per_process(photos, monkeypatch) -> None:
    root, truncated, notes = photos
    builder = tfds.ImageFolder(str(root))
    calls = []
    check = screening.check_images
    monkeypatch.setattr(screening, "check_images", lambda p, **kw: calls.append(1) or check(p))
    split = stream.open_split(builder, "train", host_preprocess=PRE16, num_shards=2)
    assert sorted(b.path for b in split.left_out) == sorted([str(truncated), str(notes)])
    assert split.num_examples == 120 and sum(split.shard_sizes) == 120
    files = {p for shard in split.shards for p in shard.paths}
    assert str(truncated) not in files and str(notes) not in files and len(files) == 120
    again = stream.open_split(builder, "train", host_preprocess=PRE16, num_shards=2)
    assert calls == [1] and again.left_out == split.left_out  # screened once, cached
    assert all(b.reason for b in split.left_out)
    # Only the files of the classes asked for are screened, and left out.
    one = stream.open_split(builder, "train", host_preprocess=PRE16, classes=(1, 2))
    assert [b.path for b in one.left_out] == [str(notes)] and one.num_examples == 80
    # Every batch of the epoch and of the evaluation reads: no bad file is met.
    assert sum(len(b["label"]) for b in split.train_batches(16, seed=0, epoch=0)) == 112
    masks = [b["mask"].sum() for b in split.eval_batches(16)]
    assert sum(masks) == 120


def test_fail_names_the_files_and_the_count(photos) -> None:
    root, truncated, notes = photos
    builder = tfds.ImageFolder(str(root))
    with pytest.raises(errors.BadImageError) as err:
        stream.open_split(builder, "train", host_preprocess=PRE16, bad_images="fail")
    message = str(err.value)
    assert str(truncated) in message and str(notes) in message
    assert "2 of its 122 image files cannot be decoded" in message
    assert "--config.bad_images=skip" in message
    with pytest.raises(errors.ConfigError, match="config.bad_images='ignore': use 'skip'"):
        stream.open_split(builder, "train", host_preprocess=PRE16, bad_images="ignore")


def test_the_key_is_validated_and_older_workdirs_get_skip() -> None:
    assert config_lib.base_config().bad_images == "skip"
    with pytest.raises(errors.ConfigError, match="config.bad_images='drop'"):
        config_lib.validate_config(make_tiny_config(bad_images="drop"))
    saved = json.loads(make_tiny_config().to_json())
    del saved["bad_images"]
    assert config_lib.upgrade_saved_config(saved)["bad_images"] == "skip"
    assert "bad_images" in config_lib.RESUMABLE  # a re-run may switch skip and fail


def test_a_file_going_bad_while_streaming_is_named(tmp_path) -> None:
    _photo_folder(tmp_path, per_class=6)
    builder = tfds.ImageFolder(str(tmp_path))
    split = stream.open_split(builder, "train", host_preprocess=PRE16, num_shards=2)
    victim = split.shards[1].paths[3]
    Path(victim).write_text("<html>this is not a picture</html>")
    with pytest.raises(errors.BadImageError, match="met while reading the split") as err:
        list(split.train_batches(6, seed=0, epoch=0))  # 3 batches of 3 a shard: every file
    assert victim in str(err.value) and "1 image files cannot be decoded" in str(err.value)
    with pytest.raises(errors.BadImageError) as err:
        list(split.eval_batches(4))
    assert victim in str(err.value)
    os.remove(victim)  # a file deleted after screening: named too
    with pytest.raises(errors.BadImageError, match="cannot be read"):
        list(split.eval_batches(4))


def test_left_out_is_sorted_and_once_each() -> None:
    bad = [data.image_files.BadImage("b.jpg", "x"), data.image_files.BadImage("a.jpg", "y")]

    class Streamed:
        left_out = tuple(bad)

    got = screening.left_out([Streamed(), Streamed(), object()])
    assert [b.path for b in got] == ["a.jpg", "b.jpg"]


def test_bad_images_txt_is_rewritten_and_removed_when_none_are_left(tmp_path) -> None:
    bad = [data.image_files.BadImage("a b.jpg", "empty file")]
    path = workdir_lib.save_bad_images(tmp_path, bad)
    assert path == tmp_path / "bad_images.txt" and path.read_text() == "a b.jpg\tempty file\n"
    assert workdir_lib.save_bad_images(tmp_path, []) is None and not path.exists()


# ------------------------------------------------------------------------------ training


def test_train_skips_them_and_lists_them(photos, tmp_path, capsys) -> None:
    root, truncated, notes = photos
    workdir = tmp_path / "run"
    assert train_cli.main(_argv(root, workdir)) == 0  # one step of 64 of the 120 readable
    lines = (workdir / workdir_lib.BAD_IMAGES_FILE).read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == sorted([str(truncated), str(notes)])
    assert all(len(line.split("\t")) == 2 and line.split("\t")[1] for line in lines)
    said = capsys.readouterr()
    assert "2 unreadable image files left out" in said.out + said.err
    assert json.loads(said.out.strip().splitlines()[-1])["step"] == 1


def test_train_with_fail_exits_2_naming_them_before_any_work(photos, tmp_path, capsys) -> None:
    root, truncated, notes = photos
    workdir = tmp_path / "run"
    assert train_cli.main(_argv(root, workdir, "--config.bad_images=fail")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "Traceback" not in "".join(err)
    assert str(truncated) in err[-1] or str(notes) in err[-1]
    assert "image files cannot be decoded" in err[-1]
    assert not workdir.exists()  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_the_issues_command(photos, tmp_path, policy) -> None:
    """The issue's command (the Keras example's config on the folder), shortened to one step:
    'skip' trains and lists both files, 'fail' exits 2 naming both; no TensorFlow traceback."""
    root, truncated, notes = photos
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "swinjax.train",
        "--config",
        str(REPO / "experiments" / "keras_example.py"),
        f"--config.dataset=imagefolder:{root}",
        "--config.train_split=train",  # the whole folder: both bad files
        "--config.val_split=",
        "--config.test_split=",
        "--config.batch_size=16",
        "--config.max_steps=1",
        "--config.progress_bar=False",
        f"--config.bad_images={policy}",
        "--workdir",
        str(workdir),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert "Traceback" not in done.stderr and "InvalidArgumentError" not in done.stderr
    if policy == "fail":
        assert done.returncode == 2, done.stderr
        assert str(truncated) in done.stderr and str(notes) in done.stderr
        assert not workdir.exists()
    else:
        assert done.returncode == 0, done.stderr
        listed = (workdir / workdir_lib.BAD_IMAGES_FILE).read_text()
        assert str(truncated) in listed and str(notes) in listed


@pytest.mark.slow
def test_resume_over_bad_files_equals_uninterrupted(photos, tmp_path, capsys) -> None:
    root = photos[0]
    config = make_tiny_config(
        dataset=f"imagefolder:{root}", test_split="", batch_size=16, num_epochs=2
    )
    assert len(data.load_split(config, config.train_split, (16, 16)).left_out) == 2  # both
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    steps = trainer.train_and_evaluate(config, straight)["step"]
    screening.clear_cache()  # the resumed run screens again, as a new process would
    interrupted = config.copy_and_resolve_references()
    interrupted.max_steps = steps // 2 + 2  # mid epoch 2
    assert trainer.train_and_evaluate(interrupted, resumed)["stopped_by"] == "max_steps"
    screening.clear_cache()
    trainer.train_and_evaluate(config, resumed)
    a = checkpoint.restore(straight, "latest", _template(config))[0]
    b = checkpoint.restore(resumed, "latest", _template(config))[0]
    assert int(a.step) == int(b.step) == steps
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)  # bitwise on the CPU
    listed = (straight / workdir_lib.BAD_IMAGES_FILE).read_text()
    assert listed == (resumed / workdir_lib.BAD_IMAGES_FILE).read_text()
    # eval reads the readable files: train[:90%] and train[90%:] of the 122 hold 120.
    counts = []
    for split in ("train", "val"):
        assert eval_cli.main(["swinjax.eval", "--ckpt", str(straight), "--split", split]) == 0
        counts.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert sum(c["num_examples"] for c in counts) == 120


def _template(config):
    from swinjax.training.setup import setup_run

    return setup_run(config, splits={"train": config.train_split}, train=False).take_state()
