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

from swinjax import attention, windows
from swinjax.dropout import Dropout, drop, dropout_scale
from swinjax.linear import Dense, tokens_2d
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


@jax.custom_vjp
def gelu(x: jnp.ndarray) -> jnp.ndarray:
    """Exact (erf) GELU, 0.5 x (1 + erf(x / sqrt 2)) as PyTorch and Keras write it, whose
    backward pass recomputes Phi(x) and phi(x) from x.

    Autodiff of ``nn.gelu(x, approximate=False)`` keeps erf and exp intermediates of the full
    MLP width alive from the forward to the backward pass; here the forward is one fused pass
    that writes only the output, and the backward one fused pass over x and the incoming gradient.
    """
    return _gelu(x)


def _gelu(x: jnp.ndarray) -> jnp.ndarray:
    x32 = x.astype(jnp.float32)
    return (0.5 * x32 * (1.0 + jax.lax.erf(x32 * np.float32(np.sqrt(0.5))))).astype(x.dtype)


def _gelu_fwd(x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    return _gelu(x), x


def _gelu_bwd(x: jnp.ndarray, g: jnp.ndarray) -> tuple[jnp.ndarray]:
    x32 = x.astype(jnp.float32)
    # erf is odd: written on -x, XLA does not merge it with the forward's erf(x), which would
    # keep a full-width erf array alive from the forward to the backward pass.
    cdf = 0.5 * (1.0 - jax.lax.erf(-x32 * np.float32(np.sqrt(0.5))))
    pdf = jnp.exp(-0.5 * x32 * x32) * np.float32(1.0 / np.sqrt(2.0 * np.pi))
    return ((g.astype(jnp.float32) * (cdf + x32 * pdf)).astype(x.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)


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
        shape = (x.shape[0],) + (1,) * (x.ndim - 1) if self.mode == "sample" else x.shape
        return drop(x, self.make_rng("dropout"), self.rate, shape)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout, on (tokens, C) rows."""

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
        shape = x.shape
        x = tokens_2d(x)
        x = Dense(self.hidden_dim, name="fc1", **dense)(x)
        x = gelu(x)
        x = Dropout(self.drop)(x, deterministic=deterministic)
        x = Dense(shape[-1], name="fc2", **dense)(x)
        return Dropout(self.drop)(x, deterministic=deterministic).reshape(shape)


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
    # Windows of at most this many tokens use attention.small_window_attention (same math).
    elementwise_max_tokens: int = 16

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
        table_Th = self.param(
            "relative_position_bias_table",
            table_init,
            ((2 * wh - 1) * (2 * ww - 1), heads),
            self.param_dtype,
        )
        dense = dict(
            kernel_init=dense_init(self.weight_init), dtype=self.dtype, param_dtype=self.param_dtype
        )

        qkv = Dense(3 * C, use_bias=self.qkv_bias, name="qkv", **dense)(tokens_2d(x_BwNC))
        qkv = qkv.reshape(Bw, N, 3, heads, head_dim)
        q_BwNhd, k_BwNhd, v_BwNhd = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q_BwNhd = q_BwNhd * jnp.asarray(head_dim**-0.5, q_BwNhd.dtype)
        index_NN = windows.relative_position_index(self.window)
        bias_NNh = jnp.take(table_Th, index_NN.reshape(-1), axis=0).reshape(N, N, heads)
        add_wNNh = bias_NNh.astype(jnp.float32)[None]
        if mask_wNN is not None:
            add_wNNh = add_wNNh + mask_wNN[..., None]
        scale_BwNNh = None
        if not deterministic and self.attn_drop > 0.0:
            scale_BwNNh = dropout_scale(self.make_rng("dropout"), self.attn_drop, (Bw, N, N, heads))
        attend = (
            attention.small_window_attention
            if N <= self.elementwise_max_tokens
            else attention.matmul_attention
        )
        out = attend(q_BwNhd, k_BwNhd, v_BwNhd, add_wNNh, scale_BwNNh)
        out = out.reshape(Bw * N, C)
        out = Dense(C, name="proj", **dense)(out)
        return Dropout(self.proj_drop)(out, deterministic=deterministic).reshape(Bw, N, C)


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
        y = Dense(
            self.out_dim,
            use_bias=False,
            kernel_init=dense_init(self.weight_init),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="reduction",
        )(tokens_2d(x))
        return y.reshape(B, H // 2, W // 2, self.out_dim)


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
