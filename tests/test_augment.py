"""Device-side augmentation: crops are translations of the padded image, flips are mirrors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.augment import transforms

# One compile per (shape, mode, padding) instead of op-by-op dispatch: keeps the file fast.
_augment = jax.jit(transforms.augment, static_argnames=("mode", "padding"))


def _images(n: int = 16, h: int = 8, w: int = 8, c: int = 3) -> jax.Array:
    """Random uint8 images with no zero pixel (so padding is recognisable)."""
    return jax.random.randint(jax.random.key(0), (n, h, w, c), 1, 256).astype(jnp.uint8)


def _window_of(out_HWC: np.ndarray, padded_HWC: np.ndarray) -> list[tuple[int, int, bool]]:
    """All (dy, dx, flipped) such that out_HWC is that (mirrored) window of padded_HWC."""
    h, w = out_HWC.shape[:2]
    hits = []
    for dy in range(padded_HWC.shape[0] - h + 1):
        for dx in range(padded_HWC.shape[1] - w + 1):
            window = padded_HWC[dy : dy + h, dx : dx + w]
            for flipped in (False, True):
                if np.array_equal(out_HWC, window[:, ::-1] if flipped else window):
                    hits.append((dy, dx, flipped))
    return hits


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.float32])
def test_crop_flip_outputs_are_shifted_windows_of_the_padded_input(dtype) -> None:
    x_BHWC = _images().astype(dtype)
    out_BHWC = _augment(jax.random.key(1), x_BHWC, mode="crop_flip", padding=2)
    assert out_BHWC.shape == x_BHWC.shape and out_BHWC.dtype == x_BHWC.dtype
    x, out = np.asarray(x_BHWC), np.asarray(out_BHWC)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    found = []
    for i in range(len(x)):
        hits = _window_of(out[i], padded[i])
        assert hits, f"image {i} is not a (mirrored) crop of its zero-padded input"
        found.append(hits[0])
    assert len({(dy, dx) for dy, dx, _ in found}) > 3  # offsets vary from image to image
    assert 0 < sum(f for *_, f in found) < len(found)  # some flipped, some not


def test_each_image_gets_its_own_crop() -> None:
    same_BHWC = jnp.broadcast_to(_images(1), (16, 8, 8, 3))
    out = np.asarray(_augment(jax.random.key(5), same_BHWC, mode="crop_flip", padding=2))
    assert len({o.tobytes() for o in out}) > 8


def test_padding_zero_is_flip_only_and_none_is_identity() -> None:
    x = _images()
    out = np.asarray(
        jax.jit(transforms.random_crop_flip, static_argnums=2)(jax.random.key(1), x, 0)
    )
    xs = np.asarray(x)
    assert all(
        np.array_equal(o, i) or np.array_equal(o, i[:, ::-1]) for o, i in zip(out, xs, strict=True)
    )
    np.testing.assert_array_equal(transforms.augment(jax.random.key(2), x, "none", 4), xs)


def test_flip_only_is_identity_or_mirror_and_keyed() -> None:
    x = _images()
    out = np.asarray(_augment(jax.random.key(2), x, mode="seed_exact"))
    same = np.all(out == np.asarray(x), axis=(1, 2, 3))
    mirrored = np.all(out == np.asarray(x[:, :, ::-1]), axis=(1, 2, 3))
    assert np.all(same | mirrored) and 2 < mirrored.sum() < 14
    np.testing.assert_array_equal(out, _augment(jax.random.key(2), x, mode="seed_exact"))
    assert not np.array_equal(out, _augment(jax.random.key(3), x, mode="seed_exact"))


def test_same_key_same_output_jitted_or_not() -> None:
    x = _images()
    a = _augment(jax.random.key(7), x, mode="crop_flip", padding=2)
    np.testing.assert_array_equal(a, transforms.augment(jax.random.key(7), x, "crop_flip", 2))
    np.testing.assert_array_equal(a, _augment(jax.random.key(7), x, mode="crop_flip", padding=2))
    assert not np.array_equal(a, _augment(jax.random.key(8), x, mode="crop_flip", padding=2))


def test_bad_mode_and_padding_fail_before_tracing() -> None:
    with pytest.raises(ValueError, match=r"augment mode 'mixup' is not one of \('crop_flip'"):
        transforms.augment(jax.random.key(0), _images(), "mixup")
    with pytest.raises(ValueError, match="padding must be"):
        transforms.augment(jax.random.key(0), _images(), "crop_flip", padding=-1)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        transforms.random_flip(jax.random.key(0), _images()[0])


def test_normalize() -> None:
    x = jnp.array([[[[0, 255, 51]]]], jnp.uint8)
    scaled = transforms.normalize(x)
    assert scaled.dtype == jnp.float32
    np.testing.assert_allclose(scaled, [[[[0.0, 1.0, 0.2]]]], atol=1e-7)
    full = transforms.normalize(_images())
    assert float(full.min()) >= 0.0 and float(full.max()) <= 1.0
    std = transforms.normalize(x, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    np.testing.assert_allclose(std, [[[[-1.0, 2.0, -0.3]]]], atol=1e-6)
    with pytest.raises(ValueError, match="needs both mean and std"):
        transforms.normalize(x, mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="one value per channel"):
        transforms.normalize(x, mean=(0.5,), std=(0.5,))
