"""Device-side augmentation: crops are translations of the padded image, flips are mirrors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import augment


def _images(n=16, h=8, w=8, c=3):
    return jax.random.randint(jax.random.key(0), (n, h, w, c), 1, 256).astype(jnp.uint8)


def test_crop_flip_outputs_are_shifted_windows_of_the_padded_input() -> None:
    x = np.asarray(_images())
    out = np.asarray(augment.random_crop_flip(jax.random.key(1), jnp.asarray(x), padding=2))
    assert out.shape == x.shape and out.dtype == np.uint8
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    offsets = set()
    for i in range(len(x)):
        found = [
            (dy, dx, f)
            for dy in range(5)
            for dx in range(5)
            for f in (False, True)
            if np.array_equal(
                out[i], (lambda w: w[:, ::-1] if f else w)(padded[i, dy : dy + 8, dx : dx + 8])
            )
        ]
        assert found, f"image {i} is not a crop of its padded input"
        offsets.add(found[0][:2])
    assert len(offsets) > 3  # offsets really vary from image to image


def test_flip_only_is_identity_or_mirror_and_keyed() -> None:
    x = _images(64)
    out = augment.augment(jax.random.key(2), x, "seed_exact")
    same = np.all(np.asarray(out) == np.asarray(x), axis=(1, 2, 3))
    mirrored = np.all(np.asarray(out) == np.asarray(x[:, :, ::-1]), axis=(1, 2, 3))
    assert np.all(same | mirrored) and 10 < mirrored.sum() < 54
    np.testing.assert_array_equal(out, augment.augment(jax.random.key(2), x, "seed_exact"))
    assert not np.array_equal(out, augment.augment(jax.random.key(3), x, "seed_exact"))
    np.testing.assert_array_equal(augment.augment(jax.random.key(2), x, "none"), x)


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="augment mode 'mixup' is not one of"):
        augment.augment(jax.random.key(0), _images(), "mixup")


def test_normalize() -> None:
    x = jnp.array([[[[0, 255, 51]]]], jnp.uint8)
    np.testing.assert_allclose(augment.normalize(x), [[[[0.0, 1.0, 0.2]]]], atol=1e-7)
    std = augment.normalize(x, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    np.testing.assert_allclose(std, [[[[-1.0, 2.0, -0.3]]]], atol=1e-6)
    with pytest.raises(ValueError, match="needs both mean and std"):
        augment.normalize(x, mean=(0.5,))
