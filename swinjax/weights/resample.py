"""timm's resampling functions for checkpoints of another size, in numpy (float32 where timm
computes in float32): relative position bias tables resized to another window
(``resize_rel_pos_bias_table``), patch embeddings resampled to another patch size
(``resample_patch_embed``), absolute position embeddings to another grid
(``resample_abs_pos_embed``). :mod:`swinjax.weights.convert` applies them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

# timm's resampling functions, in numpy (float32 where timm computes in float32).


def _source_grid(n: int, dst: tuple[int, int]) -> tuple[int, int] | None:
    """timm's guess of a flattened grid's (h, w): square if ``n`` is a square, else ``dst`` if
    the sizes agree, else None (it cannot tell)."""
    side = math.isqrt(n)
    if side * side == n:
        return side, side
    return dst if n == dst[0] * dst[1] else None


def resize_rel_pos_bias_table(
    table: np.ndarray, new_window: tuple[int, int], new_num_pos: int | None = None
) -> np.ndarray:
    """timm's ``resize_rel_pos_bias_table`` for a flat (num_pos, heads) table (the BEiT scheme).

    The source's offsets (a square window's, unless the table has the target's size) are spread
    over the target's range with geometrically growing steps, and each head is interpolated
    bilinearly at the target's integer offsets (edge values beyond). Extra rows (``new_num_pos``
    beyond the grid, BEiT's class-token rows) are kept. Returns ``table`` if nothing changes.
    """
    dst = (2 * new_window[0] - 1, 2 * new_window[1] - 1)
    num_pos, heads = table.shape
    extra = (dst[0] * dst[1] if new_num_pos is None else new_num_pos) - dst[0] * dst[1]
    src = _source_grid(num_pos - extra, dst)
    if src is None:
        raise ValueError(f"{num_pos} rows are neither a square grid nor {dst[0]}x{dst[1]}")
    if src == dst:
        return table
    grid = table[: num_pos - extra].astype(np.float32).reshape(src[0], src[1], heads)
    ys, xs = _geometric_offsets(src[0], dst[0]), _geometric_offsets(src[1], dst[1])
    out = _interp_bilinear(ys, xs, grid, dst)
    tail = table[num_pos - extra :].astype(np.float32)
    return np.concatenate([out.reshape(-1, heads), tail]).astype(table.dtype)


def _geometric_offsets(src: int, dst: int) -> np.ndarray:
    """Source offsets -n..n (n = src // 2) at distances 1, 1+q, 1+q+q^2... reaching about dst // 2
    (q bisected in [1.01, 1.5] in Python floats), rounded to float32 as ``torch.tensor`` does."""
    n = src // 2
    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if (1.0 - q**n) / (1.0 - q) > dst // 2:
            right = q
        else:
            left = q
    steps, cur = [], 1.0
    for i in range(n):
        steps.append(cur)
        cur += q ** (i + 1)
    return np.array([-s for s in reversed(steps)] + [0.0] + steps, dtype=np.float32)


def _axis_weights(points: np.ndarray, targets: np.ndarray) -> tuple:
    """timm's RegularGridInterpolator along one axis: neighbour indices and distances (left,
    right), the edge value beyond the points."""
    right = np.minimum(np.searchsorted(points, targets, side="left"), len(points) - 1)
    left = np.clip(right - 1, 0, len(points) - 1)
    d_left, d_right = targets - points[left], points[right] - targets
    d_left, d_right = np.where(d_left < 0, 0, d_left), np.where(d_right < 0, 0, d_right)
    both = (d_left == 0) & (d_right == 0)
    d_left, d_right = np.where(both, 1, d_left), np.where(both, 1, d_right)
    return (left, right), (d_left.astype(np.float32), d_right.astype(np.float32))


def _interp_bilinear(ys: np.ndarray, xs: np.ndarray, z_HWh: np.ndarray, dst: tuple) -> np.ndarray:
    """Bilinear interpolation of (h, w, heads) values on the grid ``ys`` x ``xs`` at the integer
    offsets of a ``dst`` grid, in float32 with timm's order of operations."""
    offsets = lambda n: np.arange(-(n // 2), n // 2 + 1, dtype=np.float32)
    (iy, dy), (ix, dx) = _axis_weights(ys, offsets(dst[0])), _axis_weights(xs, offsets(dst[1]))
    out = np.zeros((*dst, z_HWh.shape[2]), np.float32)
    for oy, ox in itertools.product((0, 1), repeat=2):
        w = dy[1 - oy][:, None] * dx[1 - ox][None, :]
        out = out + z_HWh[iy[oy][:, None], ix[ox][None, :]] * w[..., None]
    den = (dy[0] + dy[1])[:, None] * (dx[0] + dx[1])[None, :]
    return out / den[..., None]


def _cubic_aa(x: np.ndarray) -> np.ndarray:
    """The cubic filter of torch's antialiased bicubic resize (PIL's): Keys with a = -0.5."""
    a, x = -0.5, np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def bicubic_aa_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) weights of torch's ``F.interpolate(mode="bicubic", antialias=True)``
    along one axis: output i averages the inputs around ``scale * (i + 0.5)`` (scale = in/out)
    with the cubic filter, stretched by the scale when downsampling, normalised to sum 1."""
    scale = in_size / out_size
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        w = _cubic_aa((np.arange(lo, hi) - center + 0.5) * inv)
        m[i, lo:hi] = w / w.sum() if w.sum() != 0 else w
    return m


def resample_patch_embed(kernel_OIHW: np.ndarray, new_hw: Sequence[int]) -> np.ndarray:
    """timm's ``resample_patch_embed`` (FlexiViT): the kernel w' with <resize(x), w'> = <x, w>
    in the least-squares sense, w' = pinv(R)^T w for R the bicubic-antialias resize matrix
    (new_h*new_w, old_h*old_w). Returns the kernel itself when the size is unchanged."""
    old, new = tuple(kernel_OIHW.shape[-2:]), tuple(int(s) for s in new_hw)
    if old == new:
        return kernel_OIHW
    resize = np.kron(bicubic_aa_matrix(old[0], new[0]), bicubic_aa_matrix(old[1], new[1]))
    pinv = np.linalg.pinv(resize, rcond=max(resize.shape) * np.finfo(np.float32).eps)
    o, i = kernel_OIHW.shape[:2]
    flat = kernel_OIHW.astype(np.float32).reshape(o, i, -1).astype(np.float64)
    return (flat @ pinv).reshape(o, i, *new).astype(kernel_OIHW.dtype)


def resample_abs_pos_embed(pos_1SC: np.ndarray, new_hw: Sequence[int]) -> np.ndarray:
    """timm's ``resample_abs_pos_embed`` without prefix tokens: (1, N, C) on a square grid (or
    already on ``new_hw``) -> (1, new_h * new_w, C), bicubic with antialiasing. Returns the
    embedding itself when the grid is unchanged."""
    _, n, c = pos_1SC.shape
    new = tuple(int(s) for s in new_hw)
    old = _source_grid(n, new)
    if old is None:
        raise ValueError(f"{n} positions are neither a square grid nor the target grid {new}")
    if old == new:
        return pos_1SC
    grid = pos_1SC.astype(np.float32).reshape(*old, c).astype(np.float64)
    rows, cols = bicubic_aa_matrix(old[0], new[0]), bicubic_aa_matrix(old[1], new[1])
    out = np.einsum("hi,wj,ijc->hwc", rows, cols, grid)
    return out.reshape(1, -1, c).astype(pos_1SC.dtype)
