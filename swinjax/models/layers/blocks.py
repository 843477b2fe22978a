"""Swin Transformer building blocks as Flax linen modules (static shapes, NHWC).

Module and parameter names mirror timm's ``SwinTransformer`` (``patch_embed/proj``,
``layers_i/blocks_j/attn/qkv``, ``mlp/fc1``, ``downsample/reduction``, ...) so that converting a
PyTorch state dict is a rename table plus transposes (see :mod:`swinjax.weights.convert`). The
modules' ``kernels`` field (:mod:`swinjax.models.layers.kernel_sets`) chooses the formulations of
Dense, GELU, dropout and attention they trace; it changes no parameter and no dropout mask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from swinjax.models.layers import kernel_sets, windows
from swinjax.models.layers.dropout import Dropout, drop, dropout_scale
from swinjax.models.layers.linear import tokens_2d
from swinjax.models.layers.windows import Pair

Dtype = Any
LN_EPS = 1e-5  # PyTorch's and Keras' LayerNorm epsilon (flax's default is 1e-6)
DROP_PATH_MODES = ("sample", "element")
WEIGHT_INITS = ("timm", "keras")
# Rematerialisation of the Swin blocks (SwinStage.remat), jax.checkpoint policies: "blocks" keeps
# the outputs of a block's linear layers (qkv, proj, fc1, fc2: named LINEAR_OUT, because the cpu
# kernels' matrix products sit inside a custom VJP, where dots_saveable does not see them) and
# recomputes the rest (norms, attention cores, GELU, dropout) in the backward pass; "full" keeps
# only each block's input and recomputes the whole block, matrix products included.
LINEAR_OUT = "linear_out"
REMAT_POLICIES = {
    "none": None,
    "blocks": jax.checkpoint_policies.save_only_these_names(LINEAR_OUT),
    "full": jax.checkpoint_policies.nothing_saveable,
}


def dense_init(weight_init: str) -> nn.initializers.Initializer:
    """Kernel initializer of linear layers: timm's trunc-normal(0.02) or Keras' Glorot uniform."""
    if weight_init == "keras":
        return nn.initializers.glorot_uniform()
    return nn.initializers.truncated_normal(stddev=0.02)


def layer_norm(
    name: str, *, dtype: Dtype, param_dtype: Dtype, zero_init: bool = False
) -> nn.LayerNorm:
    """PyTorch's LayerNorm (epsilon 1e-5) over the channels, as the submodule ``name``;
    ``zero_init``: scale and bias start at 0 (Swin V2's residual post-norms)."""
    inits = dict(scale_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)
    return nn.LayerNorm(
        epsilon=LN_EPS,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
        **(inits if zero_init else {}),
    )


class DropPath(nn.Module, kw_only=True):
    """Stochastic depth on a residual branch.

    ``mode="sample"`` (the paper's): each sample's whole branch is dropped with probability
    ``rate`` and survivors are scaled by 1 / (1 - rate). ``mode="element"`` reproduces the Keras
    example, which applied ordinary element-wise dropout to the branch instead.
    Needs the ``dropout`` rng collection when not deterministic.
    """

    rate: float
    mode: str = "sample"
    kernels: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        if deterministic or self.rate == 0.0:
            return x
        shape = (x.shape[0],) + (1,) * (x.ndim - 1) if self.mode == "sample" else x.shape
        fused = kernel_sets.get(self.kernels).fused_dropout
        return drop(x, self.make_rng("dropout"), self.rate, shape, fused)


class Mlp(nn.Module, kw_only=True):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout, on (tokens, C) rows."""

    hidden_dim: int
    drop: float = 0.0
    weight_init: str = "timm"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernels: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        ks = kernel_sets.get(self.kernels)
        dense = dict(
            kernel_init=dense_init(self.weight_init), dtype=self.dtype, param_dtype=self.param_dtype
        )
        shape = x.shape
        x = tokens_2d(x)
        x = checkpoint_name(ks.dense(features=self.hidden_dim, name="fc1", **dense)(x), LINEAR_OUT)
        x = ks.gelu(x)
        x = Dropout(rate=self.drop, fused=ks.fused_dropout)(x, deterministic=deterministic)
        x = checkpoint_name(ks.dense(features=shape[-1], name="fc2", **dense)(x), LINEAR_OUT)
        x = Dropout(rate=self.drop, fused=ks.fused_dropout)(x, deterministic=deterministic)
        return x.reshape(shape)


class WindowAttention(nn.Module, kw_only=True):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    Input ``x_BwNC``: (B * w, N, C), the w windows of each of B images, of N = wh * ww tokens
    each. ``mask_wNN`` (a numpy constant, or None) is added to the logits of each window of
    every image.
    """

    num_heads: int
    window: Pair
    qkv_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    weight_init: str = "timm"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernels: str = "auto"  # the attention formulation: kernels.KernelSet.attention

    @nn.compact
    def __call__(
        self, x_BwNC: jnp.ndarray, mask_wNN: np.ndarray | None, deterministic: bool
    ) -> jnp.ndarray:
        ks = kernel_sets.get(self.kernels)
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

        qkv_dense = ks.dense(features=3 * C, use_bias=self.qkv_bias, name="qkv", **dense)
        qkv = qkv_dense(tokens_2d(x_BwNC))
        qkv = checkpoint_name(qkv, LINEAR_OUT)
        qkv = qkv.reshape(Bw, N, 3, heads, head_dim)
        q_BwNhd, k_BwNhd, v_BwNhd = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q_BwNhd = q_BwNhd * jnp.asarray(head_dim**-0.5, q_BwNhd.dtype)
        add_wNNh = additive_term(table_Th, self.window, mask_wNN)
        return attend_and_project(
            self, q_BwNhd, k_BwNhd, v_BwNhd, add_wNNh, dense=dense, deterministic=deterministic
        )


def additive_term(table_Th: jnp.ndarray, window: Pair, mask_wNN: np.ndarray | None) -> jnp.ndarray:
    """The additive logit term of window attention, float32 (1 or w, N, N, h): the per-offset
    bias table read at every (query, key) pair of a window, plus the shifted-window mask."""
    index_NN = windows.relative_position_index(window)
    N = index_NN.shape[0]
    bias_NNh = jnp.take(table_Th, index_NN.reshape(-1), axis=0).reshape(N, N, -1)
    add_wNNh = bias_NNh.astype(jnp.float32)[None]
    if mask_wNN is not None:
        add_wNNh = add_wNNh + mask_wNN[..., None]
    return add_wNNh


def attend_and_project(
    module: nn.Module,
    q_BwNhd: jnp.ndarray,
    k_BwNhd: jnp.ndarray,
    v_BwNhd: jnp.ndarray,
    add_wNNh: jnp.ndarray,
    *,
    dense: dict[str, Any],
    deterministic: bool,
    logit_scale_h: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """The end of window attention, V1's and V2's: the kernel set's attention (of pre-scaled
    queries, or V2's scaled cosine attention with ``logit_scale_h``: see
    :mod:`.attention`) with the additive per-window term, dropout of the probabilities, the
    output projection ``proj`` (built with ``dense``'s keyword arguments) and its dropout:
    (Bw, N, C).

    Called inside ``module``'s compact ``__call__`` (the submodules are its children); reads
    its ``attn_drop``, ``proj_drop`` and ``kernels`` fields and its ``dropout`` rng.
    """
    ks = kernel_sets.get(module.kernels)
    Bw, N, heads, head_dim = q_BwNhd.shape
    scale_BwNNh = None
    if not deterministic and module.attn_drop > 0.0:
        scale_BwNNh = dropout_scale(
            module.make_rng("dropout"), module.attn_drop, (Bw, N, N, heads), fused=ks.fused_dropout
        )
    attend = ks.attention(N, head_dim)
    out = attend(q_BwNhd, k_BwNhd, v_BwNhd, add_wNNh, scale_BwNNh, logit_scale_h)
    C = heads * head_dim
    out = ks.dense(features=C, name="proj", **dense)(out.reshape(Bw * N, C))
    out = checkpoint_name(out, LINEAR_OUT)
    out = Dropout(rate=module.proj_drop, fused=ks.fused_dropout)(out, deterministic=deterministic)
    return out.reshape(Bw, N, C)


def shifted_window_attention(
    attend: Callable[[jnp.ndarray, np.ndarray | None], jnp.ndarray],
    x_BHWC: jnp.ndarray,
    window: Pair,
    shift: Pair,
) -> jnp.ndarray:
    """(Shifted-)window attention of a feature map, V1's and V2's: roll by -shift, split into
    windows, ``attend(x_BwNC, mask_wNN)`` (the shifted-window mask, or None unshifted), merge
    the windows and roll back: (B, H, W, C) in and out."""
    B, H, W, C = x_BHWC.shape
    shifted = any(shift)
    mask_wNN = windows.shifted_window_mask((H, W), window, shift) if shifted else None
    if shifted:
        x_BHWC = jnp.roll(x_BHWC, (-shift[0], -shift[1]), axis=(1, 2))
    y_BwNC = attend(windows.window_partition(x_BHWC, window), mask_wNN)
    y_BHWC = windows.window_reverse(y_BwNC, window, H, W)
    if shifted:
        y_BHWC = jnp.roll(y_BHWC, shift, axis=(1, 2))
    return y_BHWC


class SwinBlock(nn.Module, kw_only=True):
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
    kernels: str = "auto"

    @nn.compact
    def __call__(self, x_BHWC: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        C = x_BHWC.shape[-1]
        norm = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn = WindowAttention(
            num_heads=self.num_heads,
            window=self.window,
            qkv_bias=self.qkv_bias,
            attn_drop=self.attn_drop,
            proj_drop=self.drop,
            weight_init=self.weight_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernels=self.kernels,
            name="attn",
        )
        y = layer_norm("norm1", **norm)(x_BHWC)
        y = shifted_window_attention(
            lambda y_BwNC, mask_wNN: attn(y_BwNC, mask_wNN, deterministic),
            y,
            self.window,
            self.shift,
        )
        drop_path = dict(rate=self.drop_path, mode=self.drop_path_mode, kernels=self.kernels)
        x_BHWC = x_BHWC + DropPath(**drop_path)(y, deterministic)  # DropPath_0

        y = layer_norm("norm2", **norm)(x_BHWC)
        y = Mlp(
            hidden_dim=int(C * self.mlp_ratio),
            drop=self.drop,
            weight_init=self.weight_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernels=self.kernels,
            name="mlp",
        )(y, deterministic)
        return x_BHWC + DropPath(**drop_path)(y, deterministic)  # DropPath_1


class PatchMerging(nn.Module, kw_only=True):
    """2x2 neighbourhood -> one token: (B, H, W, C) -> (B, H/2, W/2, out_dim).

    Channels are concatenated in the paper's order x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2],
    x[1::2, 1::2], then LayerNorm (optional: the Keras example has none) and a bias-free linear
    4C -> out_dim; with ``norm_last`` (Swin V2) the linear first, then LayerNorm over out_dim.
    """

    out_dim: int
    norm: bool = True
    norm_last: bool = False
    weight_init: str = "timm"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernels: str = "auto"

    @nn.compact
    def __call__(self, x_BHWC: jnp.ndarray) -> jnp.ndarray:
        B, H, W, C = x_BHWC.shape
        x = x_BHWC.reshape(B, H // 2, 2, W // 2, 2, C)  # (b, i, row parity, j, col parity, c)
        x = x.transpose(0, 1, 3, 4, 2, 5).reshape(B, H // 2, W // 2, 4 * C)

        def norm(z: jnp.ndarray) -> jnp.ndarray:
            return layer_norm("norm", dtype=self.dtype, param_dtype=self.param_dtype)(z)

        if self.norm and not self.norm_last:
            x = norm(x)
        y = kernel_sets.get(self.kernels).dense(
            features=self.out_dim,
            use_bias=False,
            kernel_init=dense_init(self.weight_init),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="reduction",
        )(tokens_2d(x))
        y = y.reshape(B, H // 2, W // 2, self.out_dim)
        return norm(y) if self.norm and self.norm_last else y


class PatchEmbed(nn.Module, kw_only=True):
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
            features=self.embed_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="VALID",
            kernel_init=kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="proj",
        )(images_BHWC)
        if self.norm:
            x = layer_norm("norm", dtype=self.dtype, param_dtype=self.param_dtype)(x)
        return x
