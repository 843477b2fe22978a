"""Data: real tfds code on mock CIFAR-100, on tfds directories built here by tfds' own builder
(tests/tfds_fixture.py) and, where present, on the shared real CIFAR-10; order and padding."""

from __future__ import annotations

import inspect
import threading
import time
import types

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from swinjax import data, errors
from swinjax.config import base_config
from swinjax.data import sources
from tests import tfds_fixture
from tests.conftest import SHARED_TFDS, requires_shared_tfds


def _config(
    base: ml_collections.ConfigDict | None = None, **overrides
) -> ml_collections.ConfigDict:
    config = base_config() if base is None else base.copy_and_resolve_references()
    config.update(overrides)
    return config


def test_default_config_has_the_flat_data_keys() -> None:
    config = base_config()
    for key in ("dataset", "data_dir", "train_split", "val_split", "test_split"):
        assert isinstance(config[key], str)
    assert (config.dataset, config.train_split, config.val_split, config.test_split) == (
        "cifar100",
        "train[:90%]",
        "train[90%:]",
        "test",
    )
    assert config.batch_size > 0 and config.eval_batch_size == 0 and config.seed == 0


def test_cifar100_through_tfds_mock_data(mock_tfds, no_network) -> None:
    with mock_tfds("cifar100", num_examples=40) as data_dir:
        config = _config(data_dir=data_dir, input_pipeline="memory")
        splits = data.load_splits(config)
        whole = data.load_split(config, "train")
    assert set(splits) == {"train", "val", "test"}
    for split in (*splits.values(), whole):
        assert split.images_EHWC.dtype == np.uint8 and split.image_shape == (32, 32, 3)
        assert split.labels_E.dtype == np.int32 and split.num_classes == 100
        assert 0 <= split.labels_E.min() and split.labels_E.max() < 100
    assert len(splits["train"].class_names) == 100
    train, val = splits["train"], splits["val"]
    assert (train.num_examples, val.num_examples, whole.num_examples) == (36, 4, 40)
    np.testing.assert_array_equal(
        np.concatenate([train.images_EHWC, val.images_EHWC]), whole.images_EHWC
    )
    np.testing.assert_array_equal(np.concatenate([train.labels_E, val.labels_E]), whole.labels_E)
    assert not no_network


def test_grayscale_dataset_keeps_one_channel(mock_tfds) -> None:
    with mock_tfds("fashion_mnist", num_examples=6) as data_dir:
        config = _config(dataset="fashion_mnist", data_dir=data_dir, input_pipeline="memory")
        split = data.load_split(config, "test")
    assert split.images_EHWC.shape == (6, 28, 28, 1) and split.num_classes == 10


def test_each_mock_reads_its_own_examples(mock_tfds) -> None:
    """The cache is per dataset directory and split: a new mock (a new directory) reads again."""
    for n in (5, 7):
        with mock_tfds("cifar100", num_examples=n) as data_dir:
            config = _config(data_dir=data_dir, input_pipeline="memory")
            assert data.load_split(config, "test").num_examples == n
            assert data.load_split(config, "test") is data.load_split(config, "test")


def test_auto_pipeline_without_recorded_split_sizes_names_the_fix(mock_tfds) -> None:
    with mock_tfds("cifar100", num_examples=5) as data_dir:
        with pytest.raises(errors.InvalidSplitError, match="records no split sizes") as err:
            data.load_split(_config(data_dir=data_dir), "test")  # input_pipeline="auto"
    assert "--config.input_pipeline=memory" in str(err.value)


def _sorted_examples(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    """The examples as a sorted list (tfds shuffles them into the record files)."""
    return sorted(bytes([int(y)]) + x.tobytes() for x, y in zip(images, labels, strict=True))


def test_tfds_dir_built_by_tfds_reads_back_exactly(tiny_tfds_dir, monkeypatch) -> None:
    spec = tiny_tfds_dir.spec
    config = _config(dataset=tiny_tfds_dir.name, data_dir=tiny_tfds_dir.data_dir)
    assert tiny_tfds_dir.name not in tfds.list_builders(with_community_datasets=False)
    assert (tiny_tfds_dir.dataset_dir / "dataset_info.json").is_file()
    splits = data.load_splits(config)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert train.num_examples + val.num_examples == spec.train_examples
    assert 0 < val.num_examples < train.num_examples and test.num_examples == spec.test_examples
    for split in (train, val, test):
        assert split.image_shape == spec.image_shape and split.images_EHWC.dtype == np.uint8
        assert split.labels_E.dtype == np.int32 and split.num_classes == spec.num_classes
        assert split.class_names == spec.class_names
        assert not split.images_EHWC.flags.writeable
    assert train.name == f"{spec.name}:train[:90%]"
    # Exactly the examples the builder generated (PNG is lossless), shuffled by tfds.
    whole = data.load_split(config, "train")
    np.testing.assert_array_equal(
        np.concatenate([train.images_EHWC, val.images_EHWC]), whole.images_EHWC
    )
    for split, name in ((whole, "train"), (test, "test")):
        expected = _sorted_examples(*spec.arrays(name))
        assert _sorted_examples(split.images_EHWC, split.labels_E) == expected
    assert not np.array_equal(whole.labels_E, spec.arrays("train")[1])  # shuffled on disk
    assert data.load_split(config, "train[:90%]") is train  # cached in-process
    # The class signal is learnable: nearest class mean on train classifies test well.
    d = int(np.prod(spec.image_shape))
    class_means = np.stack(
        [
            whole.images_EHWC[whole.labels_E == k].reshape(-1, d).mean(0)
            for k in range(spec.num_classes)
        ]
    )
    test_pixels = test.images_EHWC.reshape(-1, d).astype(np.float32)
    predicted = np.argmin(((test_pixels[:, None] - class_means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == test.labels_E).mean() > 0.9
    # data_dir "" or None falls back to $TFDS_DATA_DIR
    monkeypatch.setenv("TFDS_DATA_DIR", tiny_tfds_dir.data_dir)
    for empty in ("", None):
        same = data.load_split(_config(dataset=spec.name, data_dir=empty), "test")
        np.testing.assert_array_equal(same.images_EHWC, test.images_EHWC)


def test_tfds_dir_of_variable_size_jpegs(tmp_path, no_network) -> None:
    spec = tfds_fixture.TinyImages(
        name="swinjax_test_jpegs", image_size=None, encoding_format="jpeg", train_examples=12
    )
    built = tfds_fixture.build(tmp_path, spec)  # offline: no_network refuses any connection
    builder = tfds.builder(built.name, data_dir=built.data_dir)
    assert builder.info.features["image"].shape == (None, None, 3)
    read = list(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)))
    shapes = {ex["image"].shape for ex in read}
    assert len(read) == 12 and len(shapes) > 1
    low, high = spec.size_range
    assert all(low <= h <= high and low <= w <= high and c == 3 for h, w, c in shapes)
    generated = {(im.shape, y) for _, im, y in spec.examples("train")}
    assert {(ex["image"].shape, int(ex["label"])) for ex in read} == generated
    assert not no_network


@requires_shared_tfds
def test_real_cifar10_from_shared_data_dir(monkeypatch) -> None:
    config = _config(dataset="cifar10", data_dir=str(SHARED_TFDS))
    head = data.load_split(config, "train[:1%]")
    assert head.images_EHWC.shape == (500, 32, 32, 3) and head.images_EHWC.dtype == np.uint8
    assert head.labels_E.dtype == np.int32 and head.num_classes == 10
    assert head.class_names[0] == "airplane"
    assert set(np.unique(head.labels_E)) <= set(range(10)) and len(np.unique(head.labels_E)) > 5
    assert 50 < head.images_EHWC.mean() < 200  # real photos, not blank
    assert data.load_split(config, "train[:1%]") is head  # cached in-process
    assert not head.images_EHWC.flags.writeable  # the cached copy cannot be changed by a caller
    next_ = data.load_split(config, "train[1%:2%]")
    assert not np.array_equal(head.images_EHWC[:10], next_.images_EHWC[:10])
    # data_dir "" or None falls back to $TFDS_DATA_DIR
    monkeypatch.setenv("TFDS_DATA_DIR", str(SHARED_TFDS))
    for empty in ("", None):
        same = data.load_split(_config(dataset="cifar10", data_dir=empty), "train[:1%]")
        np.testing.assert_array_equal(same.labels_E, head.labels_E)


def test_missing_dataset_fails_fast_naming_it_and_the_fix(tmp_path, no_network, caplog) -> None:
    start = time.perf_counter()
    with pytest.raises(errors.DatasetNotFoundError) as err:
        data.load_splits(_config(dataset="cifar100", data_dir=str(tmp_path), download=False))
    assert time.perf_counter() - start < 10
    # No tfds warning about the dataset's folder, which does not exist; tfds' own check would
    # log one (shown here, so the assertion above is about something that can happen).
    assert not [r for r in caplog.records if "Variant folder" in r.getMessage()]
    tfds.builder("cifar100", data_dir=str(tmp_path)).is_prepared()
    assert [r for r in caplog.records if "Variant folder" in r.getMessage()]
    assert not no_network  # download=False: not even a probe
    message = str(err.value)
    assert "'cifar100'" in message and str(tmp_path) in message
    assert "download_and_prepare" in message and "--config.data_dir" in message
    assert "config.download is False" in message
    assert isinstance(err.value, FileNotFoundError)


def test_download_without_network_fails_fast_naming_the_host(tmp_path, no_network) -> None:
    """download=True (the default) on a machine whose network refuses: a quick probe of the
    dataset's download host, not tfds' ten retries with backoff (~3.5 minutes)."""
    start = time.perf_counter()
    with pytest.raises(errors.DatasetNotFoundError) as err:
        data.load_splits(_config(dataset="cifar100", data_dir=str(tmp_path)))
    assert time.perf_counter() - start < 60  # generous: the probe alone takes milliseconds
    assert no_network and all(args[0] == "www.cs.toronto.edu" for args in no_network)
    message = str(err.value)
    assert "'cifar100'" in message and str(tmp_path) in message
    assert "download hosts cannot be reached (www.cs.toronto.edu:443" in message
    assert "download_and_prepare" in message and "--config.data_dir" in message
    assert not (tmp_path / "cifar100" / "3.0.2" / "dataset_info.json").exists()


def test_unknown_dataset_and_bad_splits(tmp_path, no_network) -> None:
    with pytest.raises(errors.UnknownDatasetError, match="did you mean 'cifar100'"):
        data.load_split(_config(dataset="cifar1000", data_dir=str(tmp_path)), "train")
    # A real tfds dataset with a train split only (like the shared CIFAR-10), built here offline.
    train_only = tfds_fixture.TinyImages(
        name="swinjax_test_train_only", train_examples=40, test_examples=0
    )
    built = tfds_fixture.build(tmp_path, train_only)
    config = _config(dataset=built.name, data_dir=built.data_dir)
    with pytest.raises(
        errors.InvalidSplitError, match=r"split 'test' of 'swinjax_test_train_only'.*\['train'\]"
    ) as err:
        data.load_split(config, "test")
    assert str(err.value).count("'train'") == 1  # the splits named once, with the syntax
    assert "no split 'test'" in str(err.value) and "'train[:90%]'" in str(err.value)
    with pytest.raises(
        errors.InvalidSplitError, match=r"split 'train\[:90%' of 'swinjax_test_train_only'"
    ) as err:
        data.load_split(config, "train[:90%")
    assert "is not a tfds split string" in str(err.value) and "Unrecognized" not in str(err.value)
    for spec, message in (
        ("train[40:]", "holds no examples"),
        ("train[30:10]+train", r"slices \['train\[30:10\]'\] end before they start"),
        ("train[:200%]", r"percent slice boundaries should be in \[-100, 100\]"),
    ):
        with pytest.raises(errors.InvalidSplitError, match=message):
            data.load_split(config, spec)
    with pytest.raises(errors.UnknownDatasetError, match="'swinjax_test_train_onl'"):
        data.load_split(_config(dataset="swinjax_test_train_onl", data_dir=built.data_dir), "train")
    with pytest.raises(errors.InvalidSplitError, match="'validation' of 'synthetic'"):
        data.load_split(_config(dataset="synthetic"), "validation")
    assert not no_network


def test_synthetic_is_offline_deterministic_partitioned_and_learnable(no_network) -> None:
    config = _config(dataset="synthetic")
    splits = data.load_splits(config)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert (train.num_examples, val.num_examples, test.num_examples) == (1080, 120, 300)
    assert train.image_shape == (16, 16, 3) and train.images_EHWC.dtype == np.uint8
    full = data.load_split(config, "train")
    np.testing.assert_array_equal(
        np.concatenate([train.images_EHWC, val.images_EHWC]), full.images_EHWC
    )
    data.clear_cache()
    again = data.load_split(config, "train")
    assert again is not full
    np.testing.assert_array_equal(again.images_EHWC, full.images_EHWC)
    np.testing.assert_array_equal(again.labels_E, full.labels_E)
    other = data.load_split(_config(dataset="synthetic", synthetic_seed=1), "train")
    assert not np.array_equal(other.images_EHWC, full.images_EHWC)
    # The class signal is learnable: nearest class mean on train classifies test well.
    class_means = np.stack(
        [train.images_EHWC[train.labels_E == k].reshape(-1, 768).mean(0) for k in range(10)]
    )
    test_pixels = test.images_EHWC.reshape(-1, 768).astype(np.float32)
    predicted = np.argmin(((test_pixels[:, None] - class_means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == test.labels_E).mean() > 0.9
    gray = data.load_split(_config(dataset="synthetic", synthetic_channels=1), "test[:10]")
    assert gray.images_EHWC.shape == (10, 16, 16, 1)
    assert not no_network


def test_epoch_order_is_a_pure_function_of_seed_and_epoch() -> None:
    p0 = data.epoch_permutation(100, seed=3, epoch=0)
    np.testing.assert_array_equal(p0, data.epoch_permutation(100, seed=3, epoch=0))
    assert not np.array_equal(p0, data.epoch_permutation(100, seed=3, epoch=1))
    assert not np.array_equal(p0, data.epoch_permutation(100, seed=4, epoch=0))
    np.testing.assert_array_equal(np.sort(p0), np.arange(100))


def test_train_batches_drop_remainder_and_resume_mid_epoch() -> None:
    split = data.load_split(_config(dataset="synthetic"), "train[:90%]")  # 1080 examples
    full = list(data.train_batches(split, 100, seed=0, epoch=2))
    assert len(full) == 10 == data.steps_per_epoch(1080, 100)  # 80 examples dropped
    for b in full:
        assert b["image"].shape == (100, 16, 16, 3) and b["image"].dtype == np.uint8
        assert b["label"].shape == (100,) and b["label"].dtype == np.int32
    order = data.epoch_permutation(1080, seed=0, epoch=2)
    np.testing.assert_array_equal(full[3]["label"], split.labels_E[order[300:400]])
    tail = list(data.train_batches(split, 100, seed=0, epoch=2, start_step=7))
    assert len(tail) == 3
    for x, y in zip(full[7:], tail, strict=True):
        np.testing.assert_array_equal(x["label"], y["label"])
        np.testing.assert_array_equal(x["image"], y["image"])
    other = next(data.train_batches(split, 100, seed=0, epoch=3))
    assert not np.array_equal(other["label"], full[0]["label"])
    assert list(data.train_batches(split, 100, seed=0, epoch=2, start_step=10)) == []


def test_eval_batches_cover_every_example_once() -> None:
    split = data.load_split(_config(dataset="synthetic"), "train[90%:]")  # 120 examples
    batches = list(data.eval_batches(split, 50))
    assert [b["image"].shape for b in batches] == [(50, 16, 16, 3)] * 3
    assert all(b["mask"].dtype == np.float32 and b["mask"].shape == (50,) for b in batches)
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == 120 and np.all(mask[:120] == 1) and np.all(mask[120:] == 0)
    labels = np.concatenate([b["label"] for b in batches])[mask == 1]
    images = np.concatenate([b["image"] for b in batches])[mask == 1]
    np.testing.assert_array_equal(labels, split.labels_E)
    np.testing.assert_array_equal(images, split.images_EHWC)


def test_prefetch_to_device_keeps_order_propagates_errors_and_stops() -> None:
    batches = [{"x": np.full((2,), i)} for i in range(5)]
    out = [int(b["x"][0]) for b in data.prefetch_to_device(iter(batches), size=2)]
    assert out == [0, 1, 2, 3, 4]
    device = jax.devices()[0]
    sharding = jax.sharding.SingleDeviceSharding(device)
    for b in data.prefetch_to_device(iter(batches), size=2, sharding=sharding):
        assert isinstance(b["x"], jax.Array) and b["x"].devices() == {device}

    def broken():
        yield {"x": np.zeros(2)}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        list(data.prefetch_to_device(broken()))

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield {"x": np.full((2,), i)}
                i += 1
        finally:
            closed.set()

    for batch in data.prefetch_to_device(endless(), size=1):
        if int(batch["x"][0]) == 3:
            break  # closes the prefetcher: its thread stops and closes the source
    assert closed.wait(5)
    assert not any(t.name == "prefetch_to_device" and t.is_alive() for t in threading.enumerate())


def test_both_kinds_of_split_implement_the_protocol(tiny_tfds_dir) -> None:
    """Callers type against data.Split: both kinds have every member, with its signature."""
    config = _config(dataset=tiny_tfds_dir.name, data_dir=tiny_tfds_dir.data_dir)
    in_memory = data.load_split(_config(config, input_pipeline="memory"), "test")
    streamed = data.load_split(_config(config, input_pipeline="stream"), "test")
    assert type(in_memory) is data.InMemorySplit and type(streamed) is data.StreamedSplit
    members = [m for m in vars(data.Split) if not m.startswith("_")]
    assert set(members) >= {"name", "num_classes", "train_batches", "eval_batches", "head"}
    for split in (in_memory, streamed):
        assert isinstance(split, data.Split)
        for member in members:
            declared = inspect.getattr_static(data.Split, member)
            if callable(declared):
                assert inspect.signature(getattr(type(split), member)).parameters.keys() == (
                    inspect.signature(declared).parameters.keys()
                ), member
        assert (split.name, split.num_examples, split.num_classes) == (
            f"{tiny_tfds_dir.name}:test",
            70,
            4,
        )
        assert split.class_names == tiny_tfds_dir.spec.class_names
        head = split.head(7)
        assert type(head) is type(split) and head.num_examples == 7
        assert head.name == f"{tiny_tfds_dir.name}:test[:7]"
        assert (head.image_shape, head.class_names) == (split.image_shape, split.class_names)
        (first,) = head.eval_batches(8)
        (whole,) = list(split.eval_batches(8))[:1]
        assert first["mask"].sum() == 7
        np.testing.assert_array_equal(first["image"][:7], whole["image"][:7])
        np.testing.assert_array_equal(first["label"][:7], whole["label"][:7])
        with pytest.raises(ValueError, match=r"head\(71\)"):
            split.head(71)


def test_shards_are_cut_as_tfds_even_splits_cuts_them() -> None:
    """Streamed splits cut their ranges into shards with sources.shard_ranges, which must give
    exactly tfds.even_splits' parts (runs resumed across versions see the same batches)."""
    sizes = {"train": 300, "test": 70}
    infos = {k: types.SimpleNamespace(num_examples=n, shard_lengths=[n]) for k, n in sizes.items()}
    for spec in ("train", "test[5:]", "train[:90%]", "train[10%:]+test", "test[:7]"):
        ranges = sources.split_ranges("x", spec, sizes)
        for n in (1, 2, 3, 8):
            ours = sources.shard_ranges(ranges, n)
            for k, part in enumerate(tfds.even_splits(spec, n=n)):
                expected = [
                    (i.splitname, i.from_ or 0, sizes[i.splitname] if i.to is None else i.to)
                    for i in part.to_absolute(infos)
                ]
                assert ours[k] == [r for r in expected if r[2] > r[1]], (spec, n, k)
    assert sources.ranges_spec([("train", 0, 9), ("test", 3, 5)]) == "train[0:9]+test[3:5]"
