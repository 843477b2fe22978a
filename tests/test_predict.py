"""python -m swinjax.predict and swinjax.serve: image files classified as the run's evaluation
scores them, unreadable files reported in their rows, embeddings, the outputs and exit statuses.

The shared workdir is an image-folder run's config with a checkpoint of its initial state
(written directly: no training step compiles); the slow test trains one for real.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swinjax import data, predict
from swinjax.config import input_size
from swinjax.serve import Predictor, predict_files
from swinjax.training import checkpoint, evaluation, inference, steps, workdir
from swinjax.training.setup import setup_run
from tests.conftest import REPO, VERSIONS, make_tiny_config, over_versions

CLASSES = ("cat", "dog", "emu")
# The tests of what every Swin does run on the workdir of each version (the ``run`` fixture's).
over_family = pytest.mark.parametrize("run", VERSIONS, ids=lambda v: f"v{v}", indirect=True)
COLOURS = ((200, 60, 60), (60, 200, 60), (60, 60, 200))
BATCH = 4  # one batch shape everywhere: each program compiles once


def _write(path: Path, size: tuple[int, int], colour: tuple, mode: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(colour) + rng.normal(0, 40, (*size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)


def _image_root(root: Path) -> None:
    """root/train/<class>/ (6 images each) and root/test/<class>/ (one image each: a large
    JPEG, a small PNG, a grayscale PNG), sizes differing."""
    for name, colour in zip(CLASSES, COLOURS, strict=True):
        for i in range(6):
            suffix = ".jpg" if i % 2 else ".png"
            _write(root / "train" / name / f"{i}{suffix}", (18 + 3 * i, 30 - i), colour, "RGB", i)
    _write(root / "test/cat/big.jpg", (45, 37), COLOURS[0], "RGB", 10)
    _write(root / "test/dog/small.png", (13, 21), COLOURS[1], "RGB", 11)
    _write(root / "test/emu/gray.png", (24, 24), COLOURS[2], "L", 12)


@pytest.fixture(scope="module")
def run(tmp_path_factory, request):
    """(workdir, image root, a folder to predict on: the test images, one in a subfolder, plus
    a truncated JPEG and a text file named x.jpg). Swin V1; ``@over_family``: both versions."""
    tmp = tmp_path_factory.mktemp("predict")
    root = tmp / "pets"
    _image_root(root)
    config = make_tiny_config(
        version=getattr(request, "param", 1),
        dataset=f"imagefolder:{root}",
        train_split="train",
        val_split="",
        test_split="test",
    )
    config.model_kwargs.img_size = 16
    config.normalize = "imagenet"
    config.resize_method = "bicubic"
    run_dir = tmp / "run"
    fitted = setup_run(config, splits={"test": "test"}, train=False)
    workdir.save_config(run_dir, config)
    workdir.save_class_names(run_dir, workdir.class_names(fitted.splits["test"]))
    ckpt = checkpoint.Checkpointer(run_dir)
    ckpt.save(0, fitted.take_state(), {"epoch": 0, "epoch_step": 0})
    ckpt.close()
    folder = tmp / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(root / "test/cat/big.jpg", folder / "big.jpg")
    shutil.copy(root / "test/dog/small.png", folder / "sub/small.png")
    shutil.copy(root / "test/emu/gray.png", folder / "gray.png")
    encoded = (root / "test/cat/big.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(encoded[: len(encoded) // 2])
    (folder / "x.jpg").write_text("not an image\n")
    return run_dir, root, folder


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor.load(run[0], batch_size=BATCH)


@over_family
def test_predictions_equal_eval_logits_and_bad_files_get_their_reason(run, predictor) -> None:
    run_dir, root, folder = run
    paths, logits, failed = predictor.logits([folder])
    assert sorted(Path(p).name for p, _ in failed) == ["cut.jpg", "x.jpg"]
    assert all(reason for _, reason in failed)
    names = {Path(p).name: i for i, p in enumerate(paths)}
    assert sorted(names) == ["big.jpg", "gray.png", "small.png"]
    # eval's view of the same images: the run's test split, one image per class
    config = workdir.load_config(run_dir)
    split = data.load_split(config, "test", input_size(config))
    evaluated = evaluation.split_predictions(predictor.state, split, BATCH)
    eval_logits, labels = evaluated.logits_EK, evaluated.labels_E
    by_class = {"cat": "big.jpg", "dog": "small.png", "emu": "gray.png"}
    for row, label in zip(eval_logits, labels, strict=True):
        mine = logits[names[by_class[CLASSES[label]]]]
        np.testing.assert_allclose(mine, row, atol=1e-5, rtol=0)
    assert predictor.class_names == CLASSES

    rows = predictor.classify([folder], topk=2)
    order = [Path(r["path"]).name for r in rows]  # find_images: the folder's files, sorted
    assert order == ["big.jpg", "cut.jpg", "gray.png", "small.png", "x.jpg"]
    good = [r for r in rows if r["error"] is None]
    assert len(rows) == 5 and len(good) == 3
    for r in good:
        i = names[Path(r["path"]).name]
        probs = np.exp(logits[i] - logits[i].max())
        probs /= probs.sum()
        top = np.argsort(-probs)[:2]
        assert r["labels"] == top.tolist() and r["classes"] == [CLASSES[k] for k in top]
        np.testing.assert_allclose(r["probabilities"], probs[top], rtol=1e-5)
    bad = [r for r in rows if r["error"]]
    assert all(r["classes"] == [] for r in bad)


def test_tta_predictions_equal_eval_step_scores(predictor, run) -> None:
    folder = run[2]
    with_tta = Predictor(predictor.model, batch_size=BATCH, tta=True, tta_shift=1)
    paths, logits, _ = with_tta.logits([folder])
    images = np.zeros((BATCH, 16, 16, 3), np.uint8)
    images[: len(paths)] = np.stack([_view(predictor, p) for p in paths])
    expected = steps.predict(predictor.state, images, tta=True, tta_shift=1)[: len(paths)]
    np.testing.assert_allclose(logits, np.asarray(expected), atol=1e-5)
    plain = predictor.logits([folder])[1]
    assert not np.allclose(logits, plain, atol=1e-4)


def _view(predictor: Predictor, path: str) -> np.ndarray:
    from swinjax.serve.images import prepare_image

    return prepare_image(path, predictor.view).image_HWC


@over_family
def test_program_writes_jsonl_csv_and_exits_4_naming_bad_files(run, capsys, tmp_path) -> None:
    run_dir, _, folder = run
    argv = ["swinjax.predict", "--ckpt", str(run_dir), "--topk", "2", "--batch_size", str(BATCH)]
    assert predict.main([*argv, str(folder)]) == 4
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 5 and sum(r["error"] is not None for r in rows) == 2
    assert all(len(r["classes"]) == 2 for r in rows if r["error"] is None)
    assert "2 of 5 files could not be read" in err and "x.jpg" in err and "cut.jpg" in err

    out_csv = tmp_path / "p.csv"
    status = predict.main(
        [*argv, "--out", str(out_csv), str(folder / "*.png"), str(folder / "sub")]
    )
    assert status == 0
    table = list(csv.DictReader(out_csv.open()))
    assert [Path(r["path"]).name for r in table] == ["gray.png", "small.png"]
    assert table[0].keys() >= {"error", "class_1", "probability_1", "class_2", "probability_2"}
    assert all(r["error"] == "" and r["class_1"] in CLASSES for r in table)
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["num_failed"] == 0

    out_jsonl = tmp_path / "p.jsonl"
    assert predict.main([*argv, "--out", str(out_jsonl), "--images", str(folder)]) == 4
    assert len(out_jsonl.read_text().splitlines()) == 5


@over_family
def test_features_npz_one_row_per_readable_image(run, predictor, tmp_path) -> None:
    run_dir, _, folder = run
    out = tmp_path / "f.npz"
    argv = ["swinjax.predict", "--ckpt", str(run_dir), "--out", str(out), "--batch_size", "4"]
    assert predict.main([*argv, "--features", "pooled", str(folder)]) == 4
    saved = np.load(out)
    assert sorted(Path(p).name for p in saved["failed_paths"]) == ["cut.jpg", "x.jpg"]
    assert len(saved["failed_reasons"]) == 2 and all(saved["failed_reasons"])
    paths, logits, _ = predictor.logits(saved["paths"])
    assert paths == saved["paths"].tolist() and len(paths) == 3
    # the pooled vector is what the head classifies: pooled @ kernel + bias = the logits
    head = predictor.state.params["head"]["fc"]
    pooled = saved["pooled"].astype(np.float64)
    np.testing.assert_allclose(pooled @ head["kernel"] + head["bias"], logits, atol=1e-4)
    model = predictor.state.model
    assert pooled.shape == (3, model.embed_dim * 2 ** (len(model.depths) - 1))

    before = out.read_bytes()  # an existing --out is kept unless --overwrite
    assert predict.main([*argv, "--features", "stages", str(folder)]) == 2
    assert out.read_bytes() == before and list(tmp_path.glob(".*partial")) == []
    assert predict.main([*argv, "--overwrite", "--features", "stages", str(folder)]) == 4
    stages = np.load(out)
    keys = sorted(k for k in stages.files if k.startswith("stage_"))
    assert keys == [f"stage_{i}" for i in range(len(model.depths))]
    assert all(stages[k].shape[0] == 3 and stages[k].ndim == 4 for k in keys)


def test_bad_command_lines_exit_2_before_any_work(run, capsys, tmp_path) -> None:
    run_dir, _, folder = run
    cases = {
        "does not exist": ["--ckpt", str(tmp_path / "nope"), str(folder)],
        "is not a file, a folder or a glob": ["--ckpt", str(run_dir), str(tmp_path / "*.jpg")],
        "no images given": ["--ckpt", str(run_dir)],
        "written to .jsonl or .csv": ["--ckpt", str(run_dir), "--out", "p.txt", str(folder)],
        "--features needs --out FILE.npz": ["--ckpt", str(run_dir), "--features=pooled", "a"],
        "--ckpt required": [str(folder)],
        "--topk 0: must be >= 1": ["--ckpt", str(run_dir), "--topk", "0", str(folder)],
    }
    for message, args in cases.items():
        assert predict.main(["swinjax.predict", *args]) == 2, message
        assert message in capsys.readouterr().err


def test_restore_needs_no_dataset_and_names_classes_without_classes_json(run, tmp_path) -> None:
    run_dir, root, folder = run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / workdir.CLASSES_FILE).unlink()
    moved = tmp_path / "elsewhere"
    shutil.move(root, moved)  # the dataset is gone: the workdir alone rebuilds the model
    try:
        model = inference.restore_for_inference(copy)
        assert model.class_names == ("class_0", "class_1", "class_2") and model.always_crop
        rows = predict_files(copy, [folder / "gray.png"], topk=1, batch_size=BATCH)
        assert rows[0]["classes"][0].startswith("class_") and rows[0]["error"] is None
    finally:
        shutil.move(moved, root)


@pytest.mark.slow
@over_versions
def test_a_trained_image_folder_run_predicts_from_the_command_line(tmp_path, version) -> None:
    from swinjax.training import trainer

    _image_root(tmp_path / "pets")
    config = make_tiny_config(
        version=version,
        dataset=f"imagefolder:{tmp_path / 'pets'}",
        val_split="",
        batch_size=6,
        max_steps=3,
    )
    config.model_kwargs.img_size = 16
    trainer.train_and_evaluate(config, tmp_path / "run")
    (tmp_path / "pets/test/cat/notes.jpg").write_text("<html>not a photo</html>")
    command = [sys.executable, "-m", "swinjax.predict", "--ckpt", str(tmp_path / "run")]
    done = subprocess.run(
        [*command, str(tmp_path / "pets/test")], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 4, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 4 and [r["error"] is None for r in rows].count(False) == 1
    assert {r["classes"][0] for r in rows if r["classes"]} <= set(CLASSES)
    assert "1 of 4 files could not be read" in done.stderr


@pytest.mark.slow  # a second model and its compiles: over the fast tier's share
def test_a_fixed_size_run_takes_its_images_as_eval_does(tmp_path) -> None:
    """Synthetic 16x16 data, a 32x32 model: eval feeds the 16x16 images and the device resizes
    them; predict does the same for a 16x16 file, and gives other sizes the eval view to 16."""
    config = make_tiny_config()
    config.model_kwargs.img_size = 32
    fitted = setup_run(config, splits={"test": "test[:4]"}, train=False)
    workdir.save_config(tmp_path / "run", config)
    ckpt = checkpoint.Checkpointer(tmp_path / "run")
    ckpt.save(0, fitted.take_state(), {"epoch": 0, "epoch_step": 0})
    ckpt.close()
    predictor = Predictor.load(tmp_path / "run", batch_size=BATCH)
    assert predictor.view.image_shape == (16, 16, 3) and not predictor.view.always_crop
    evaluated = evaluation.split_predictions(predictor.state, fitted.splits["test"], BATCH)
    eval_logits = evaluated.logits_EK
    images = next(data.eval_batches(fitted.splits["test"], BATCH))["image"]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    Image.fromarray(images[0]).resize((40, 30)).save(tmp_path / "wide.png")
    paths, logits, _ = predictor.logits([tmp_path / f"{i}.png" for i in range(4)])
    np.testing.assert_allclose(logits, eval_logits, atol=1e-5, rtol=0)
    assert _view(predictor, str(tmp_path / "wide.png")).shape == (16, 16, 3)
    assert predictor.class_names == tuple(f"class_{k}" for k in range(10))  # no classes.json
