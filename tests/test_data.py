"""Data: real tfds code on mock CIFAR-100 and on the shared real CIFAR-10; order and padding."""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from swinjax import data
from tests.conftest import SHARED_TFDS, make_tiny_config


def _cifar100_config(**kw):
    config = make_tiny_config(dataset="cifar100", data_dir=tempfile.mkdtemp())
    for k, v in kw.items():
        config[k] = v
    return config


def test_cifar100_through_tfds_mock_data() -> None:
    with tfds.testing.mock_data(num_examples=40):
        splits = data.load_splits(_cifar100_config())
    assert set(splits) == {"train", "val", "test"}
    for split in splits.values():
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (32, 32, 3)
        assert split.labels.dtype == np.int32 and split.num_classes == 100
        assert split.labels.min() >= 0 and split.labels.max() < 100
    assert len(splits["train"].class_names) == 100


def test_real_cifar10_from_shared_data_dir() -> None:
    assert SHARED_TFDS.is_dir(), f"expected the shared tfds directory at {SHARED_TFDS}"
    config = make_tiny_config(dataset="cifar10", data_dir=str(SHARED_TFDS))
    head = data.load_split(config, "train[:1%]")
    tail = data.load_split(config, "train[99%:]")
    assert head.images.shape == (500, 32, 32, 3) and head.num_classes == 10
    assert head.class_names[0] == "airplane"
    assert set(np.unique(head.labels)) <= set(range(10)) and len(np.unique(head.labels)) > 5
    assert not np.array_equal(head.images[:10], tail.images[:10])


def test_missing_dataset_fails_fast_with_the_fix(tmp_path) -> None:
    config = make_tiny_config(dataset="cifar100", data_dir=str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_split(config, "train")
    assert time.perf_counter() - start < 30  # no download attempt
    message = str(err.value)
    assert "'cifar100'" in message and str(tmp_path) in message and "--config.data_dir" in message


def test_unknown_dataset_and_bad_split() -> None:
    with pytest.raises(ValueError, match="is not a tfds dataset"):
        data.load_split(make_tiny_config(dataset="cifar1000"), "train")
    with pytest.raises(ValueError, match="split 'validation' is not valid"):
        data.load_split(make_tiny_config(), "validation")
    config = make_tiny_config(dataset="cifar10", data_dir=str(SHARED_TFDS))
    with pytest.raises(ValueError, match="split 'test' of 'cifar10' is not valid"):
        data.load_split(config, "test")


def test_synthetic_is_deterministic_and_partitioned() -> None:
    config = make_tiny_config()
    a, b = data.load_split(config, "train[:90%]"), data.load_split(config, "train[90%:]")
    full = data.load_split(config, "train")
    assert a.num_examples + b.num_examples == full.num_examples == 1200
    np.testing.assert_array_equal(np.concatenate([a.labels, b.labels]), full.labels)
    data._synthetic_split.cache_clear()
    np.testing.assert_array_equal(data.load_split(config, "train").images, full.images)


def test_epoch_order_is_a_pure_function_of_seed_and_epoch() -> None:
    p0 = data.epoch_permutation(100, seed=3, epoch=0)
    np.testing.assert_array_equal(p0, data.epoch_permutation(100, seed=3, epoch=0))
    assert not np.array_equal(p0, data.epoch_permutation(100, seed=3, epoch=1))
    assert not np.array_equal(p0, data.epoch_permutation(100, seed=4, epoch=0))
    np.testing.assert_array_equal(np.sort(p0), np.arange(100))


def test_train_batches_drop_remainder_and_resume_mid_epoch() -> None:
    split = data.load_split(make_tiny_config(), "train[:90%]")  # 1080 examples
    full = list(data.train_batches(split, 100, seed=0, epoch=2))
    assert len(full) == 10 == data.steps_per_epoch(1080, 100)
    assert all(b["image"].shape == (100, 16, 16, 3) for b in full)
    tail = list(data.train_batches(split, 100, seed=0, epoch=2, start_step=7))
    assert len(tail) == 3
    for x, y in zip(full[7:], tail, strict=True):
        np.testing.assert_array_equal(x["label"], y["label"])
        np.testing.assert_array_equal(x["image"], y["image"])


def test_eval_batches_cover_every_example_once() -> None:
    split = data.load_split(make_tiny_config(), "train[90%:]")  # 120 examples
    batches = list(data.eval_batches(split, 50))
    assert [b["image"].shape[0] for b in batches] == [50, 50, 50]
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == 120 and np.all(mask[:120] == 1) and np.all(mask[120:] == 0)
    labels = np.concatenate([b["label"] for b in batches])[mask == 1]
    np.testing.assert_array_equal(labels, split.labels)


def test_prefetch_to_device_keeps_order_and_propagates_errors() -> None:
    batches = [{"x": np.full((2,), i)} for i in range(5)]
    out = [int(b["x"][0]) for b in data.prefetch_to_device(iter(batches), size=2)]
    assert out == [0, 1, 2, 3, 4]

    def broken():
        yield {"x": np.zeros(2)}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        list(data.prefetch_to_device(broken()))
