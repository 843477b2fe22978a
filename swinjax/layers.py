"""Swin Transformer building blocks as Flax linen modules (static shapes, NHWC).

Module and parameter names mirror timm's ``SwinTransformer`` (``patch_embed/proj``,
``layers_i/blocks_j/attn/qkv``, ``mlp/fc1``, ``downsample/reduction``, ...) so that converting a
PyTorch state dict is a rename table plus transposes (see :mod:`swinjax.convert`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from swinjax import windows
from swinjax.windows import Pair

Dtype = Any
LN_EPS = 1e-5  # PyTorch's and Keras' LayerNorm epsilon (flax's default is 1e-6)
DROP_PATH_MODES = ("sample", "element")
WEIGHT_INITS = ("timm", "keras")


def dense_init(weight_init: str) -> nn.initializers.Initializer:
    """Kernel initializer of linear layers: timm's trunc-normal(0.02) or Keras' Glorot uniform."""
    if weight_init == "keras":
        return nn.initializers.glorot_uniform()
    return nn.initializers.truncated_normal(stddev=0.02)


def layer_norm(name: str, dtype: Dtype, param_dtype: Dtype) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LN_EPS, dtype=dtype, param_dtype=param_dtype, name=name)


class DropPath(nn.Module):
    """Stochastic depth on a residual branch.

    ``mode="sample"`` (the paper's): each sample's whole branch is dropped with probability
    ``rate`` and survivors are scaled by 1 / (1 - rate). ``mode="element"`` reproduces the Keras
    example, which applied ordinary element-wise dropout to the branch instead.
    Needs the ``dropout`` rng collection when not deterministic.
    """

    rate: float
    mode: str = "sample"

    @nn.compact
    def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1) if self.mode == "sample" else x.shape
        kept = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
        return jnp.where(kept, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


class Mlp(nn.Module):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout."""

    hidden_dim: int
    drop: float = 0.0
    weight_init: str = "timm"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        dense = dict(
            kernel_init=dense_init(self.weight_init), dtype=self.dtype, param_dtype=self.param_dtype
        )
        out_dim = x.shape[-1]
        x = nn.Dense(self.hidden_dim, name="fc1", **dense)(x)
        x = nn.gelu(x, approximate=False)
        x = nn.Dropout(self.drop)(x, deterministic=deterministic)
        x = nn.Dense(out_dim, name="fc2", **dense)(x)
        return nn.Dropout(self.drop)(x, deterministic=deterministic)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    Input ``x_BwNC``: (B * nW, N, C) tokens of nW windows of N = wh * ww tokens each. ``mask_wNN``
    (a numpy constant, or None) is added to the logits of window w of every image.
    """

    num_heads: int
    window: Pair
    qkv_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    weight_init: str = "timm"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x_BwNC: jnp.ndarray, mask_wNN: np.ndarray | None, deterministic: bool
    ) -> jnp.ndarray:
        Bw, N, C = x_BwNC.shape
        heads = self.num_heads
        head_dim = C // heads
        wh, ww = self.window
        table_init = (
            nn.initializers.zeros
            if self.weight_init == "keras"
            else nn.initializers.truncated_normal(stddev=0.02)
        )
        table_TH = self.param(
            "relative_position_bias_table",
            table_init,
            ((2 * wh - 1) * (2 * ww - 1), heads),
            self.param_dtype,
        )
        dense = dict(
            kernel_init=dense_init(self.weight_init), dtype=self.dtype, param_dtype=self.param_dtype
        )

        qkv = nn.Dense(3 * C, use_bias=self.qkv_bias, name="qkv", **dense)(x_BwNC)
        qkv = qkv.reshape(Bw, N, 3, heads, head_dim)
        q_BwNHD, k_BwNHD, v_BwNHD = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q_BwNHD = q_BwNHD * jnp.asarray(head_dim**-0.5, q_BwNHD.dtype)
        logits = jnp.einsum("bnhd,bmhd->bhnm", q_BwNHD, k_BwNHD).astype(jnp.float32)

        index_NN = windows.relative_position_index(self.window)
        bias_HNN = jnp.take(table_TH, index_NN.reshape(-1), axis=0).reshape(N, N, heads)
        logits = logits + bias_HNN.transpose(2, 0, 1).astype(jnp.float32)
        if mask_wNN is not None:
            nW = mask_wNN.shape[0]
            logits = logits.reshape(Bw // nW, nW, heads, N, N) + mask_wNN[None, :, None]
            logits = logits.reshape(Bw, heads, N, N)
        attn = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        attn = nn.Dropout(self.attn_drop)(attn, deterministic=deterministic)

        out = jnp.einsum("bhnm,bmhd->bnhd", attn, v_BwNHD).reshape(Bw, N, C)
        out = nn.Dense(C, name="proj", **dense)(out)
        return nn.Dropout(self.proj_drop)(out, deterministic=deterministic)


class SwinBlock(nn.Module):
    """(Shifted-)window attention and MLP, each pre-norm with a residual: (B, H, W, C) in and out.

    ``window`` and ``shift`` are the stage's values after :func:`windows.clamp_window`.
    """

    num_heads: int
    window: Pair
    shift: Pair
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: float = 0.0
    drop_path_mode: str = "sample"
    weight_init: str = "timm"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BHWC: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        B, H, W, C = x_BHWC.shape
        shifted = any(self.shift)
        mask = windows.shifted_window_mask((H, W), self.window, self.shift) if shifted else None

        y = layer_norm("norm1", self.dtype, self.param_dtype)(x_BHWC)
        if shifted:
            y = jnp.roll(y, (-self.shift[0], -self.shift[1]), axis=(1, 2))
        y_BwNC = windows.window_partition(y, self.window)
        y_BwNC = WindowAttention(
            self.num_heads,
            self.window,
            self.qkv_bias,
            self.attn_drop,
            self.drop,
            self.weight_init,
            self.dtype,
            self.param_dtype,
            name="attn",
        )(y_BwNC, mask, deterministic)
        y = windows.window_reverse(y_BwNC, self.window, H, W)
        if shifted:
            y = jnp.roll(y, self.shift, axis=(1, 2))
        x_BHWC = x_BHWC + DropPath(self.drop_path, self.drop_path_mode)(y, deterministic)

        y = layer_norm("norm2", self.dtype, self.param_dtype)(x_BHWC)
        y = Mlp(
            int(C * self.mlp_ratio),
            self.drop,
            self.weight_init,
            self.dtype,
            self.param_dtype,
            name="mlp",
        )(y, deterministic)
        return x_BHWC + DropPath(self.drop_path, self.drop_path_mode)(y, deterministic)


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> one token: (B, H, W, C) -> (B, H/2, W/2, out_dim).

    Channels are concatenated in the paper's order x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2],
    x[1::2, 1::2], then LayerNorm (optional: the Keras example has none) and a bias-free linear
    4C -> out_dim.
    """

    out_dim: int
    norm: bool = True
    weight_init: str = "timm"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BHWC: jnp.ndarray) -> jnp.ndarray:
        B, H, W, C = x_BHWC.shape
        x = x_BHWC.reshape(B, H // 2, 2, W // 2, 2, C)  # (b, i, row parity, j, col parity, c)
        x = x.transpose(0, 1, 3, 4, 2, 5).reshape(B, H // 2, W // 2, 4 * C)
        if self.norm:
            x = layer_norm("norm", self.dtype, self.param_dtype)(x)
        return nn.Dense(
            self.out_dim,
            use_bias=False,
            kernel_init=dense_init(self.weight_init),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="reduction",
        )(x)


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: a conv with kernel = stride = patch, then LayerNorm.

    (B, H, W, in_chans) -> (B, H/p, W/p, embed_dim). A dense layer on flattened p x p x C
    patches (the Keras example) is the same function.
    """

    patch_size: Pair
    embed_dim: int
    norm: bool = True
    weight_init: str = "timm"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images_BHWC: jnp.ndarray) -> jnp.ndarray:
        if self.weight_init == "keras":  # Glorot over the flattened patch, as a Dense layer sees it
            kernel_init = nn.initializers.variance_scaling(
                1.0, "fan_avg", "uniform", in_axis=(0, 1, 2), out_axis=3
            )
        else:
            kernel_init = nn.initializers.lecun_normal()
        x = nn.Conv(
            self.embed_dim,
            self.patch_size,
            strides=self.patch_size,
            padding="VALID",
            kernel_init=kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="proj",
        )(images_BHWC)
        if self.norm:
            x = layer_norm("norm", self.dtype, self.param_dtype)(x)
        return x


class SwinStage(nn.Module):
    """One stage: optional patch merging at its start (timm layout), then ``depth`` blocks.

    Blocks alternate regular (even j) and shifted (odd j) windows. ``drop_paths`` holds one rate
    per block.
    """

    dim: int
    depth: int
    downsample: bool
    num_heads: int
    window: Pair
    shift: Pair
    drop_paths: Sequence[float]
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path_mode: str = "sample"
    merge_norm: bool = True
    weight_init: str = "timm"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BHWC: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        if self.downsample:
            x_BHWC = PatchMerging(
                self.dim,
                self.merge_norm,
                self.weight_init,
                self.dtype,
                self.param_dtype,
                name="downsample",
            )(x_BHWC)
        for j in range(self.depth):
            x_BHWC = SwinBlock(
                self.num_heads,
                self.window,
                self.shift if j % 2 else (0, 0),
                self.mlp_ratio,
                self.qkv_bias,
                self.drop,
                self.attn_drop,
                self.drop_paths[j],
                self.drop_path_mode,
                self.weight_init,
                self.dtype,
                self.param_dtype,
                name=f"blocks_{j}",
            )(x_BHWC, deterministic)
        return x_BHWC
