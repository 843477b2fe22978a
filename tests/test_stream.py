"""Streaming pipeline (swinjax.data.stream) and host preprocessing (swinjax.data.preprocess), on
real tfds directories built here (tests/tfds_fixture.py) and a tfds ImageFolder: the same examples
as the in-memory split, exact resume, process blocks, evaluation padding, crop geometry."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from swinjax import data, errors
from swinjax.data import stream
from swinjax.data.preprocess import HostPreprocess, center_view, rrc_window, train_image
from tests import tfds_fixture
from tests.conftest import REPO

JPEGS = tfds_fixture.TinyImages(
    name="swinjax_stream_jpegs",
    image_size=None,
    size_range=(12, 40),
    encoding_format="jpeg",
    train_examples=64,
    test_examples=18,
)
GRAY = tfds_fixture.TinyImages(
    name="swinjax_stream_gray", image_size=None, channels=1, train_examples=16, test_examples=0
)
RRC16 = HostPreprocess(output_size=(16, 16))


@pytest.fixture(scope="module")
def tiny(tiny_tfds_dir) -> tfds_fixture.TfdsDir:
    return tiny_tfds_dir


def _builder(built: tfds_fixture.TfdsDir):
    return tfds.builder(built.name, data_dir=built.data_dir)


def _rows(batches) -> list[tuple[bytes, int]]:
    """(image bytes, label) of every real row, in order."""
    return [
        (image.tobytes(), int(label))
        for batch in batches
        for image, label, mask in zip(
            batch["image"],
            batch["label"],
            batch.get("mask", np.ones(len(batch["label"]))),
            strict=True,
        )
        if mask
    ]


def _same_batches(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        for x, y in zip(a, b, strict=True)
    )


# ---------------------------------------------------------------------------------- training


@pytest.mark.parametrize("num_shards", [1, 2])
def test_one_epoch_is_the_memory_epoch_as_a_multiset(tiny, num_shards) -> None:
    spec = "train[10%:]"  # 270 examples: 9 batches of 30, 135 per shard
    split = stream.open_split(_builder(tiny), spec, name=tiny.name, num_shards=num_shards)
    memory = data.load_tfds_split(tiny.name, tiny.data_dir, spec)
    assert (split.name, split.num_examples, split.num_classes) == (memory.name, 270, 4)
    assert (split.image_shape, split.class_names) == (memory.image_shape, memory.class_names)
    assert split.steps_per_epoch(30) == 9
    batches = list(split.train_batches(30, seed=3, epoch=0))
    assert len(batches) == 9
    assert all(b["image"].dtype == np.uint8 and b["label"].dtype == np.int32 for b in batches)
    assert all(
        b["image"].shape == (30, 16, 16, 3) and set(b) == {"image", "label"} for b in batches
    )
    expected = _rows(data.train_batches(memory, 30, seed=3, epoch=0))
    assert sorted(_rows(batches)) == sorted(expected)


def test_epoch_order_is_a_pure_function_of_seed_and_epoch(tiny) -> None:
    split = stream.open_split(_builder(tiny), "train", num_shards=2)
    epoch0 = list(split.train_batches(20, seed=0, epoch=0))
    assert _same_batches(epoch0, list(split.train_batches(20, seed=0, epoch=0)))
    again = stream.open_split(_builder(tiny), "train", num_shards=2)  # a fresh split object
    assert _same_batches(epoch0, list(again.train_batches(20, seed=0, epoch=0)))
    for other in (split.train_batches(20, seed=0, epoch=1), split.train_batches(20, 1, 0)):
        rows = _rows(other)
        assert rows != _rows(epoch0) and sorted(rows) == sorted(_rows(epoch0))


def test_resume_mid_epoch_is_the_tail_bitwise(tiny) -> None:
    split = stream.open_split(_builder(tiny), "train", num_shards=2, shuffle_buffer=64)
    whole = list(split.train_batches(20, seed=5, epoch=2))
    assert len(whole) == split.steps_per_epoch(20) == 15
    for k in (1, 7, 14, 15):
        assert _same_batches(list(split.train_batches(20, 5, 2, start_step=k)), whole[k:])
    with pytest.raises(ValueError, match="start_step 16"):
        next(split.train_batches(20, 5, 2, start_step=16))


def test_resume_with_random_resized_crops_is_bitwise(tfds_dir_factory) -> None:
    built = tfds_dir_factory(JPEGS)
    split = stream.open_split(_builder(built), "train", num_shards=2, host_preprocess=RRC16)
    assert split.image_shape == (16, 16, 3)
    whole = list(split.train_batches(8, seed=1, epoch=0))
    assert len(whole) == 8 and whole[0]["image"].shape == (8, 16, 16, 3)
    assert _same_batches(list(split.train_batches(8, seed=1, epoch=0, start_step=3)), whole[3:])
    assert _same_batches(list(split.train_batches(8, seed=1, epoch=0)), whole)
    labels = sorted(int(x) for b in whole for x in b["label"])
    assert labels == sorted(label for _, _, label in JPEGS.examples("train"))
    other = list(split.train_batches(8, seed=1, epoch=1))
    assert not np.array_equal(other[0]["image"], whole[0]["image"])


DIGEST = """
import hashlib, sys, tensorflow_datasets as tfds
from swinjax.data import stream
from swinjax.data.preprocess import HostPreprocess
builder = tfds.builder(sys.argv[1], data_dir=sys.argv[2])
split = stream.open_split(builder, "train", num_shards=2, host_preprocess=HostPreprocess((16, 16)))
digest = hashlib.sha256()
for batch in split.train_batches(8, 4, 1, 2, process_index=1, process_count=2):
    digest.update(batch["image"].tobytes() + batch["label"].tobytes())
print(digest.hexdigest())
"""


def test_a_fresh_process_reads_the_same_epoch(tfds_dir_factory) -> None:
    """Another host's process must see the same order and crops (seeded shuffles, stateless
    crops): a fresh interpreter's digest of a process block equals this process's."""
    built = tfds_dir_factory(JPEGS)
    split = stream.open_split(_builder(built), "train", num_shards=2, host_preprocess=RRC16)
    digest = hashlib.sha256()
    for batch in split.train_batches(8, 4, 1, 2, process_index=1, process_count=2):
        digest.update(batch["image"].tobytes() + batch["label"].tobytes())
    command = [sys.executable, "-c", DIGEST, built.name, built.data_dir]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == digest.hexdigest()


# ---------------------------------------------------------------------------------- sharding


def test_process_blocks_make_up_the_one_process_batches(tiny) -> None:
    split = stream.open_split(_builder(tiny), "train[:280]", num_shards=2)
    one = list(split.train_batches(20, seed=2, epoch=1, start_step=2))
    blocks = [
        list(split.train_batches(20, 2, 1, 2, process_index=p, process_count=2)) for p in (0, 1)
    ]
    assert len(one) == len(blocks[0]) == len(blocks[1]) == 12
    for whole, first, second in zip(one, *blocks, strict=True):
        assert first["image"].shape == (10, 16, 16, 3)
        for key in ("image", "label"):
            assert np.array_equal(whole[key], np.concatenate([first[key], second[key]]))
    seen = [row for block in blocks for row in _rows(block)]
    assert len(set(seen)) == len(seen)  # disjoint (the tiny images are all distinct)
    evals = [list(split.eval_batches(16, process_index=p, process_count=2)) for p in (0, 1)]
    for whole, first, second in zip(split.eval_batches(16), *evals, strict=True):
        for key in ("image", "label", "mask"):
            assert np.array_equal(whole[key], np.concatenate([first[key], second[key]]))


def test_shard_and_process_counts_must_divide(tiny) -> None:
    split = stream.open_split(_builder(tiny), "train", num_shards=2)
    with pytest.raises(ValueError, match="not divisible by 2 data shards"):
        split.steps_per_epoch(9)
    with pytest.raises(ValueError, match="num_shards 2 .* not divisible by process_count 4"):
        next(split.train_batches(8, 0, 0, process_index=0, process_count=4))
    with pytest.raises(ValueError, match="process_index 2"):
        next(split.eval_batches(8, process_index=2, process_count=2))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        split.steps_per_epoch(0)


# -------------------------------------------------------------------------------- evaluation


def test_eval_counts_every_example_once_over_processes(tiny) -> None:
    split = stream.open_split(_builder(tiny), "test", num_shards=2)  # 70 examples: 35 per shard
    memory = data.load_tfds_split(tiny.name, tiny.data_dir, "test")
    per_process = [list(split.eval_batches(16, process_index=p, process_count=2)) for p in (0, 1)]
    assert len(per_process[0]) == len(per_process[1]) == 5  # ceil(35 / 8)
    batches = [b for process in per_process for b in process]
    assert all(b["mask"].dtype == np.float32 and b["label"].dtype == np.int32 for b in batches)
    assert sum(float(b["mask"].sum()) for b in batches) == split.num_examples == 70
    assert sorted(_rows(batches)) == sorted(_rows(data.eval_batches(memory, 16)))
    padding = [(b["image"][m == 0], b["label"][m == 0]) for b in batches for m in [b["mask"]]]
    assert all(not images.any() and not labels.any() for images, labels in padding)


def test_eval_with_one_shard_is_the_memory_order(tiny) -> None:
    split = stream.open_split(_builder(tiny), "test[5:]", num_shards=1)
    memory = data.load_tfds_split(tiny.name, tiny.data_dir, "test[5:]")
    assert _same_batches(list(split.eval_batches(16)), list(data.eval_batches(memory, 16)))


# ---------------------------------------------------------------------------- other sources


def test_variable_size_images_keep_their_channels(tfds_dir_factory) -> None:
    split = stream.open_split(_builder(tfds_dir_factory(GRAY)), "train", host_preprocess=RRC16)
    (batch,) = split.train_batches(16, 0, 0)
    (evals,) = split.eval_batches(16)
    assert batch["image"].shape == evals["image"].shape == (16, 16, 16, 1)
    assert batch["image"].dtype == np.uint8 and batch["image"].std() > 10  # not blank


def _jpeg_folder(root, counts=(("train", 24), ("test", 6)), num_classes=3):
    """root/<split>/class_<i % num_classes>/<i>.jpg: random JPEGs of 20-40 px."""
    rng = np.random.default_rng(0)
    for split_name, n in counts:
        for i in range(n):
            folder = root / split_name / f"class_{i % num_classes}"
            folder.mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 256, (rng.integers(20, 40), rng.integers(20, 40), 3))
            tf.io.write_file(str(folder / f"{i}.jpg"), tf.io.encode_jpeg(image.astype(np.uint8)))
    return tfds.ImageFolder(str(root))


def test_image_folder_builder(tmp_path) -> None:
    builder = _jpeg_folder(tmp_path)
    split = stream.open_split(builder, "train[:20]", num_shards=2, host_preprocess=RRC16)
    assert (split.name, split.num_examples, split.shard_sizes) == (
        "image_folder:train[:20]",
        20,
        (10, 10),
    )
    assert split.class_names == ("class_0", "class_1", "class_2")
    whole = list(split.train_batches(4, seed=0, epoch=0))
    assert len(whole) == 5 and whole[0]["image"].shape == (4, 16, 16, 3)
    assert _same_batches(list(split.train_batches(4, 0, 0, start_step=2)), whole[2:])
    evals = list(stream.open_split(builder, "test", host_preprocess=RRC16).eval_batches(4))
    assert sum(float(b["mask"].sum()) for b in evals) == 6


def test_image_folder_class_subsets_are_chosen_from_the_file_list(tmp_path) -> None:
    builder = _jpeg_folder(tmp_path, counts=(("train", 40),), num_classes=4)
    whole = stream.open_split(builder, "train[:30]", host_preprocess=RRC16)
    subset = stream.open_split(
        builder, "train[:30]", num_shards=2, host_preprocess=RRC16, classes=(3, 1)
    )
    assert subset.name == "image_folder:train[:30]{classes 3,1}"
    assert (subset.num_classes, subset.class_names) == (2, ("class_3", "class_1"))
    # The memory path's rule: the examples of classes 3 and 1 among train[:30], 3 -> 0, 1 -> 1.
    whole_rows = _rows(whole.eval_batches(30))
    expected = sorted((image, {3: 0, 1: 1}[y]) for image, y in whole_rows if y in (3, 1))
    assert subset.num_examples == len(expected) and 0 < len(expected) < 30
    assert (
        sum(subset.shard_sizes) == len(expected)
        and max(subset.shard_sizes) - min(subset.shard_sizes) <= 1
    )
    assert sorted(_rows(subset.eval_batches(4))) == expected
    trained = [row for batch in subset.train_batches(4, 0, 0) for row in _rows([batch])]
    assert {label for _, label in trained} == {0, 1}
    assert len(trained) == subset.steps_per_epoch(4) * 4
    with pytest.raises(errors.ConfigError, match=r"config.classes: \[4\] out of range.*4 classes"):
        stream.open_split(builder, "train", host_preprocess=RRC16, classes=(0, 4))


def test_class_subsets_of_streamed_records_say_what_works(tiny) -> None:
    with pytest.raises(errors.ConfigError, match="input_pipeline=memory") as err:
        stream.open_split(_builder(tiny), "train", classes=(0, 1))
    assert "imagefolder:ROOT" in str(err.value)


def test_head_of_a_streamed_split(tiny) -> None:
    split = stream.open_split(_builder(tiny), "test", num_shards=2)  # 35 + 35
    head = split.head(9)
    assert head.shard_sizes == (5, 4) and head.num_examples == 9
    assert head.name == f"{tiny.name}:test[:9]"
    rows = _rows(head.eval_batches(10))
    shard_rows = [_rows(stream.open_split(_builder(tiny), "test[:35]").eval_batches(5))[:5]]
    shard_rows.append(_rows(stream.open_split(_builder(tiny), "test[35:]").eval_batches(4))[:4])
    assert sorted(rows) == sorted(shard_rows[0] + shard_rows[1])
    assert len(list(head.train_batches(4, 0, 0))) == head.steps_per_epoch(4) == 2
    with pytest.raises(ValueError, match="at least one per data shard"):
        split.head(1)


def test_open_split_rejects_bad_input(tiny, tfds_dir_factory) -> None:
    builder = _builder(tiny)
    for spec in ("validation", "train[:", "train[300:]"):
        with pytest.raises(ValueError, match=re.escape(f"split {spec!r}")):
            stream.open_split(builder, spec)
    with pytest.raises(errors.InvalidSplitError, match="too few for 8 non-empty shards"):
        stream.open_split(builder, "test[:5]", num_shards=8)
    with pytest.raises(ValueError, match="num_shards must be"):
        stream.open_split(builder, "train", num_shards=0)
    with pytest.raises(ValueError, match="variable size .* host_preprocess"):
        stream.open_split(_builder(tfds_dir_factory(JPEGS)), "train")
    image = tfds.features.Image(shape=(8, 8, 3))
    label = tfds.features.ClassLabel(num_classes=2)
    unprepared = types.SimpleNamespace(
        info=types.SimpleNamespace(
            features=tfds.features.FeaturesDict({"image": image, "label": label}), splits={}
        )
    )
    with pytest.raises(ValueError, match="no split sizes: is it prepared"):
        stream.open_split(unprepared, "train", name="x")
    for features in (
        {"image": image},
        {"image": image, "label": tfds.features.Tensor(shape=(), dtype=np.int64)},
    ):
        info = types.SimpleNamespace(features=tfds.features.FeaturesDict(features))
        with pytest.raises(ValueError, match="'label'"):
            stream.open_split(types.SimpleNamespace(info=info, name="x"), "train")


def test_closing_early_starts_no_threads(tiny) -> None:
    split = stream.open_split(_builder(tiny), "train", num_shards=2)
    before = threading.active_count()
    batches = split.train_batches(20, 0, 0)
    next(batches)
    batches.close()
    evals = split.eval_batches(20)
    next(evals)
    evals.close()
    assert threading.active_count() == before


# ----------------------------------------------------------------------- host preprocessing


def _gradient(height: int, width: int) -> np.ndarray:
    """uint8 [H, W, 3]: channel 0 is the row index, channel 1 the column index."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)


def test_rrc_windows_lie_inside_the_image_and_follow_scale_and_ratio() -> None:
    for seed in range(40):
        top, left, h, w = rrc_window((90, 150), [seed, 7], (0.08, 1.0), (3 / 4, 4 / 3)).numpy()
        assert 0 <= top and top + h <= 90 and 0 <= left and left + w <= 150 and h > 0 and w > 0
        assert 0.08 * 0.9 <= h * w / (90 * 150) <= 1.0
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    # No try can fit (every area is the whole image at a ratio >= 2): timm's central fallback,
    # the whole width at the ratio clamped to 2, centred.
    window = rrc_window((100, 100), [0, 0], (1.0, 1.0), (2.0, 3.0)).numpy()
    assert window.tolist() == [25, 0, 50, 100]


@pytest.mark.parametrize("encoding", ["png", "jpeg"])
def test_random_resized_crop_takes_its_window(encoding) -> None:
    image = _gradient(120, 200)
    encoded = (
        tf.io.encode_png(image) if encoding == "png" else tf.io.encode_jpeg(image, quality=100)
    )
    pre = HostPreprocess(output_size=(24, 20))
    for seed in range(6):
        out = train_image(encoded, tf.constant([seed, 1], tf.int64), pre, channels=3).numpy()
        assert out.shape == (24, 20, 3) and out.dtype == np.uint8
        top, left, h, w = rrc_window((120, 200), [seed, 1], pre.rrc_scale, pre.rrc_ratio).numpy()
        slack = 0 if encoding == "png" else 2  # JPEG is lossy
        rows, cols = out[..., 0].astype(int), out[..., 1].astype(int)
        assert top - slack <= rows.min() and rows.max() <= top + h - 1 + slack
        assert left - slack <= cols.min() and cols.max() <= left + w - 1 + slack
        assert abs(rows.mean() - (top + (h - 1) / 2)) <= 1 + slack
        assert abs(cols.mean() - (left + (w - 1) / 2)) <= 1 + slack


def test_eval_center_crop_matches_a_hand_computation() -> None:
    pre = HostPreprocess(output_size=(14, 14), eval_crop_fraction=0.875)  # shorter side: 16
    assert pre.eval_resize == (16, 16)
    image = np.random.default_rng(0).integers(0, 256, (16, 23, 3)).astype(np.uint8)
    # 16 x 23 is already the resized size; offsets round((16-14)/2) = 1, round(4.5) = 4
    assert np.array_equal(center_view(image, pre).numpy(), image[1:15, 4:18])
    portrait = image.transpose(1, 0, 2)
    assert np.array_equal(center_view(portrait, pre).numpy(), portrait[4:18, 1:15])
    # 64 x 96 -> 32 x 48 (halved), crop offsets 8, 16: the row of resized pixel r is 2 r + 0.5
    half = HostPreprocess(output_size=(16, 16), eval_crop_fraction=0.5)
    out = center_view(_gradient(64, 96), half).numpy().astype(float)
    rows, cols = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    assert np.abs(out[..., 0] - (2 * (rows + 8) + 0.5)).max() <= 0.5
    assert np.abs(out[..., 1] - (2 * (cols + 16) + 0.5)).max() <= 0.5
    assert out.shape == (16, 16, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output_size": (0, 16)}, "output_size"),
        ({"output_size": (16,)}, "output_size"),
        ({"rrc_scale": (0.0, 1.0)}, "rrc_scale"),
        ({"rrc_scale": (0.5, 0.2)}, "rrc_scale"),
        ({"rrc_scale": (0.1, 1.5)}, "rrc_scale"),
        ({"rrc_ratio": (0.0, 1.0)}, "rrc_ratio"),
        ({"rrc_ratio": (2.0, 1.0)}, "rrc_ratio"),
        ({"eval_crop_fraction": 0.0}, "eval_crop_fraction"),
        ({"eval_crop_fraction": 1.5}, "eval_crop_fraction"),
        ({"resize_method": "nearest"}, "resize_method"),
    ],
)
def test_host_preprocess_rejects_bad_settings(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        HostPreprocess(**{"output_size": (16, 16), **kwargs})
