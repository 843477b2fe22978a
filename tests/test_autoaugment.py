"""RandAugment / TrivialAugment on the device: each op against PIL (what timm's and torchvision's
augmentations run), the geometric warp against exact shifts and rotations, and the policies'
shapes, ranges, keys, per-image independence and compile-once magnitudes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from swinjax.augment import autoaugment
from swinjax.augment import image_ops as ops

_policy = jax.jit(autoaugment.apply_policy, static_argnames=("policy", "num_ops"))


def _images(n: int = 8, h: int = 12, w: int = 12, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.asarray(jax.random.randint(jax.random.key(seed), (n, h, w, c), 0, 256), np.uint8)


def _permutation_images(n: int = 8) -> np.ndarray:
    """16x16 images in which every channel holds each of 0..255 exactly once: a fixed point of
    auto-contrast and equalize."""
    rng = np.random.default_rng(0)
    perms = [rng.permutation(256).reshape(16, 16) for _ in range(n * 3)]
    return np.stack(perms).reshape(n, 3, 16, 16).transpose(0, 2, 3, 1).astype(np.uint8)


def _ours(op, x: np.ndarray, *args) -> np.ndarray:
    out = op(jnp.asarray(x, jnp.float32), *(jnp.full((len(x),), a, jnp.float32) for a in args))
    return np.asarray(jnp.clip(jnp.round(out), 0, 255)).astype(np.int32)


def _solarize_99(im: Image.Image) -> Image.Image:
    return ImageOps.solarize(im, 99)


def _pil(fn, x: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(fn(Image.fromarray(im))) for im in x]).astype(np.int32)


@pytest.mark.parametrize(
    "ours, pil, tolerance",
    [
        (ops.equalize, ImageOps.equalize, 0),
        (functools.partial(ops.posterize, bits_B=3.0), lambda im: ImageOps.posterize(im, 3), 0),
        (functools.partial(ops.solarize, threshold_B=99.0), _solarize_99, 0),
        (ops.auto_contrast, ImageOps.autocontrast, 1),  # PIL truncates, we round
    ],
)  # fmt: skip
def test_parameterless_ops_match_pil(ours, pil, tolerance) -> None:
    x = _images()
    x[0, :, :, 1] = 7  # a constant channel: left as it is
    got, want = _ours(ours, x), _pil(pil, x)
    assert np.abs(got - want).max() <= tolerance


@pytest.mark.parametrize("name", ["brightness", "color", "contrast", "sharpness"])
@pytest.mark.parametrize("factor", [0.3, 1.0, 1.7])
def test_enhance_ops_match_pil(name, factor) -> None:
    x = _images()
    got = _ours(getattr(ops, name), x, factor)
    enhancer = getattr(ImageEnhance, name.capitalize())
    want = _pil(lambda im: enhancer(im).enhance(factor), x)
    # PIL rounds its degenerate image (gray levels, the mean) to integers: within 2 levels.
    assert np.abs(got - want).max() <= 2
    if factor == 1.0:
        np.testing.assert_array_equal(got, x)


def test_affine_integer_shifts_and_quarter_turns_are_exact() -> None:
    x = _images(2, 9, 9).astype(np.float32)
    eye = jnp.broadcast_to(jnp.eye(2), (2, 2, 2))
    shifted = np.asarray(ops.affine(jnp.asarray(x), eye, jnp.array([[2.0, 0.0], [0.0, -3.0]])))
    np.testing.assert_array_equal(shifted[0, :-2], x[0, 2:])  # source row = target row + 2
    np.testing.assert_array_equal(shifted[0, -2:], ops.FILL)
    np.testing.assert_array_equal(shifted[1, :, 3:], x[1, :, :-3])
    np.testing.assert_array_equal(shifted[1, :, :3], ops.FILL)
    turned = np.asarray(
        ops.affine(jnp.asarray(x), ops.rotation(jnp.array([90.0, 0.0])), 0 * eye[:, 0])
    )
    np.testing.assert_allclose(turned[0], np.rot90(x[0], k=-1), atol=1e-3)
    np.testing.assert_allclose(turned[1], x[1], atol=1e-4)
    sheared = np.asarray(
        ops.affine(jnp.asarray(x), ops.shear(jnp.array([1.0, 0.0]), 1), 0 * eye[:, 0])
    )
    for r in range(9):  # shear-x by 1 about the centre row 4: row r reads columns c + (r - 4)
        shift = r - 4
        inside = [c for c in range(9) if 0 <= c + shift < 9]
        np.testing.assert_array_equal(sheared[0, r, inside], x[0, r, [c + shift for c in inside]])
    np.testing.assert_array_equal(sheared[1], x[1])


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment"])
@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.float32])
def test_policy_shape_dtype_range_and_key(policy, dtype) -> None:
    x = jnp.asarray(_images(16, 8, 8))
    x = x if dtype == jnp.uint8 else x.astype(jnp.float32) / 255.0
    a = _policy(jax.random.key(1), x, policy=policy, num_ops=2, magnitude=9.0)
    assert a.shape == x.shape and a.dtype == x.dtype
    if dtype == jnp.float32:
        assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    np.testing.assert_array_equal(a, _policy(jax.random.key(1), x, policy=policy, magnitude=9.0))
    b = _policy(jax.random.key(2), x, policy=policy, magnitude=9.0)
    assert not np.array_equal(a, b)
    changed = np.any(np.asarray(a) != np.asarray(x), axis=(1, 2, 3))
    assert 0 < changed.sum()  # (identity and zero-strength draws leave some images as they are)


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment"])
def test_policy_is_per_image(policy) -> None:
    same = jnp.broadcast_to(jnp.asarray(_images(1, 8, 8)), (16, 8, 8, 3))
    out = np.asarray(_policy(jax.random.key(3), same, policy=policy, magnitude=9.0))
    assert len({o.tobytes() for o in out}) > 6  # each image its own op and magnitude
    other = np.asarray(same).copy()
    other[5] = 255 - other[5]  # another image at index 5 changes only output 5
    out2 = np.asarray(_policy(jax.random.key(3), jnp.asarray(other), policy=policy, magnitude=9.0))
    keep = np.arange(16) != 5
    np.testing.assert_array_equal(out2[keep], out[keep])
    assert not np.array_equal(out2[5], out[5])


def test_randaugment_magnitude_is_an_array_and_zero_leaves_fixed_points() -> None:
    x = jnp.asarray(_permutation_images())
    run = jax.jit(functools.partial(autoaugment.apply_policy, policy="randaugment", num_ops=3))
    zero = run(jax.random.key(0), x, magnitude=jnp.float32(0.0))
    # At M = 0 every op is the identity on these images (auto-contrast and equalize included).
    np.testing.assert_array_equal(zero, x)
    strong = np.asarray(run(jax.random.key(0), x, magnitude=jnp.float32(10.0)))
    assert np.any(strong != np.asarray(x), axis=(1, 2, 3)).sum() >= 6
    assert run._cache_size() == 1  # one program for every magnitude


def test_bad_policy_fails_before_tracing() -> None:
    with pytest.raises(ValueError, match=r"config.augment_policy='autoaug': use one of"):
        autoaugment.apply_policy(jax.random.key(0), jnp.asarray(_images()), "autoaug")
    with pytest.raises(ValueError, match=r"config.randaug_num_ops=0: must be an integer >= 1"):
        autoaugment.apply_policy(jax.random.key(0), jnp.asarray(_images()), "randaugment", 0)
    assert autoaugment.apply_policy(jax.random.key(0), x := jnp.asarray(_images()), "") is x
