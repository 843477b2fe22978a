"""Mixup, CutMix and random erasing: mixed pixels and targets match each image's lam, CutMix's
lam is the pasted area, erasing boxes follow timm's ranges; all keyed, per image, jittable."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.augment import mixing

K = 10
B, H, W, C = 16, 12, 10, 3


def _inputs() -> tuple[jax.Array, jax.Array]:
    """Images each of one distinct constant value (so a pixel tells whose it is), labels."""
    x = jnp.broadcast_to(jnp.arange(B, dtype=jnp.float32)[:, None, None, None], (B, H, W, C))
    return x, jnp.arange(B) % K


def _hparams(**values) -> dict[str, jax.Array]:
    base = dict(mixup_alpha=1.0, cutmix_alpha=1.0, mix_prob=1.0, mix_switch_prob=0.5)
    return {k: jnp.float32(v) for k, v in {**base, **values}.items()}


@functools.partial(jax.jit, static_argnames=("mixup", "cutmix"))
def _mix(key, x, labels, hparams, smoothing, mixup, cutmix):
    return mixing.mix(key, x, labels, K, smoothing, hparams, mixup=mixup, cutmix=cutmix)


def _check_targets(targets, labels, lam, smoothing) -> None:
    targets, labels, lam = np.asarray(targets), np.asarray(labels), np.asarray(lam)
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
    smooth = np.eye(K)[labels] * (1 - smoothing) + smoothing / K
    want = lam[:, None] * smooth + (1 - lam[:, None]) * smooth[::-1]
    np.testing.assert_allclose(targets, want, rtol=1e-6, atol=1e-7)


def test_mixup_blends_each_image_with_its_partner_by_its_own_lam() -> None:
    x, labels = _inputs()
    out, targets, dominant, lam = _mix(
        jax.random.key(0), x, labels, _hparams(), jnp.float32(0.1), mixup=True, cutmix=False
    )
    out, lam = np.asarray(out), np.asarray(lam)
    assert out.shape == x.shape and out.dtype == x.dtype
    partner = np.arange(B)[::-1]
    np.testing.assert_allclose(out[:, 0, 0, 0], lam * np.arange(B) + (1 - lam) * partner, atol=1e-5)
    assert np.all(out == out[:, :1, :1, :1])  # a blend, not a paste
    assert len(np.unique(lam)) == B and np.all((0 <= lam) & (lam <= 1))  # one lam per image
    _check_targets(targets, labels, lam, 0.1)
    np.testing.assert_array_equal(dominant, np.where(lam >= 0.5, labels, np.asarray(labels)[::-1]))


def test_cutmix_lam_is_the_fraction_of_own_pixels() -> None:
    x, labels = _inputs()
    out, targets, dominant, lam = _mix(
        jax.random.key(1), x, labels, _hparams(), jnp.float32(0.0), mixup=False, cutmix=True
    )
    out, lam = np.asarray(out), np.asarray(lam)
    own = out[..., 0] == np.arange(B)[:, None, None]
    from_partner = out[..., 0] == np.arange(B)[::-1, None, None]
    assert np.all(own | from_partner)  # pasted, never blended
    middle = B // 2  # (an even batch: no image is its own partner)
    assert not np.any(own & from_partner) and middle * 2 == B
    np.testing.assert_allclose(own.mean(axis=(1, 2)), lam, atol=1e-6)
    assert 0 < np.sum(lam < 1)
    for i in range(B):  # the pasted region is one rectangle
        rows, cols = np.nonzero(from_partner[i])
        if rows.size:
            assert rows.size == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    _check_targets(targets, labels, lam, 0.0)


@pytest.mark.parametrize("switch, cut", [(1.0, True), (0.0, False)])
def test_switch_prob_picks_cutmix_or_mixup(switch, cut) -> None:
    x, labels = _inputs()
    hp = _hparams(mix_switch_prob=switch)
    out, _, _, lam = _mix(jax.random.key(2), x, labels, hp, 0.1, mixup=True, cutmix=True)
    out, lam = np.asarray(out), np.asarray(lam)
    pasted = np.isin(out, np.arange(B)).all(axis=(1, 2, 3))  # only whole source values
    assert np.all(pasted) if cut else not np.any(pasted)
    if cut:
        own = out[..., 0] == np.arange(B)[:, None, None]
        np.testing.assert_allclose(own.mean(axis=(1, 2)), lam, atol=1e-6)


def test_mix_prob_zero_leaves_images_and_one_hot_targets() -> None:
    x, labels = _inputs()
    out, targets, dominant, lam = _mix(
        jax.random.key(3), x, labels, _hparams(mix_prob=0.0), 0.1, mixup=True, cutmix=True
    )
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(lam, 1.0)
    np.testing.assert_array_equal(dominant, labels)
    _check_targets(targets, labels, np.ones(B), 0.1)
    half, _, _, lam = _mix(
        jax.random.key(3), x, labels, _hparams(mix_prob=0.5), 0.1, mixup=True, cutmix=True
    )
    assert 0 < np.sum(np.asarray(lam) == 1.0) < B


def test_mixing_is_keyed_and_compiles_once_over_strengths() -> None:
    x, labels = _inputs()
    run = functools.partial(_mix, x=x, labels=labels, smoothing=0.1, mixup=True, cutmix=True)
    a = run(jax.random.key(4), hparams=_hparams())
    np.testing.assert_array_equal(a[0], run(jax.random.key(4), hparams=_hparams())[0])
    assert not np.array_equal(a[0], run(jax.random.key(5), hparams=_hparams())[0])
    before = _mix._cache_size()
    run(jax.random.key(4), hparams=_hparams(mixup_alpha=0.2, cutmix_alpha=3.0, mix_prob=0.7))
    assert _mix._cache_size() == before
    with pytest.raises(ValueError, match="turn on mixup, cutmix or both"):
        mixing.mix(jax.random.key(0), x, labels, K, 0.1, _hparams(), mixup=False, cutmix=False)


_erase = jax.jit(mixing.random_erase)


def test_random_erasing_boxes_follow_timm_ranges() -> None:
    x = jnp.full((64, 20, 24, C), 7.0)
    out = np.asarray(_erase(jax.random.key(6), x, jnp.float32(1.0)))
    erased = out[..., 0] != 7.0
    assert np.all((out != 7.0) == erased[..., None])  # all channels of a pixel, or none
    noise = out[erased[..., None].repeat(C, -1)]
    assert abs(noise.mean()) < 0.1 and 0.9 < noise.std() < 1.1  # standard normal, per pixel
    for box in erased:
        rows, cols = np.nonzero(box)
        h, w = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert rows.size == h * w and h < 20 and w < 24  # one rectangle inside the image
        area = h * w / (20 * 24)
        assert 0.02 * 0.5 <= area <= (1 / 3) * 1.5  # timm's range, up to rounding of h and w
        assert 0.3 / 1.5 <= h / w <= 1.5 / 0.3
    np.testing.assert_array_equal(_erase(jax.random.key(6), x, jnp.float32(0.0)), x)
    some = np.asarray(_erase(jax.random.key(7), x, jnp.float32(0.5))) != 7.0
    assert 10 < some.any(axis=(1, 2, 3)).sum() < 54


def test_random_erasing_is_keyed_and_per_image() -> None:
    x = jnp.full((16, 12, 12, C), 3.0)
    a = np.asarray(_erase(jax.random.key(8), x, jnp.float32(1.0)))
    np.testing.assert_array_equal(a, _erase(jax.random.key(8), x, jnp.float32(1.0)))
    assert not np.array_equal(a, _erase(jax.random.key(9), x, jnp.float32(1.0)))
    boxes = {(a[i, ..., 0] != 3.0).tobytes() for i in range(16)}
    assert len(boxes) > 8  # each image its own box
