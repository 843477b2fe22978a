"""Swin Transformer V2 (Liu et al., 2022, "Scaling Up Capacity and Resolution") blocks as Flax
linen modules: scaled cosine window attention with a continuous position bias, and the block
with residual post-normalisation. Everything else (window partition and shift mask, Mlp,
DropPath, the attention formulations of the kernel sets, patch merging with ``norm_last``) is
V1's, from :mod:`.blocks`; the stage loop choosing between them is :mod:`.stage`.

Parameter names and shapes are timm's ``SwinTransformerV2`` state dict through the generic
rename: ``attn/qkv/kernel`` (C, 3C) without bias, ``attn/q_bias`` and ``attn/v_bias`` (C,) (the
key's bias is zero, not a parameter), ``attn/logit_scale`` (heads, 1, 1), ``attn/cpb_mlp_0``
(2 -> 512, with bias), ``attn/cpb_mlp_2`` (512 -> heads, no bias), ``attn/proj``, ``norm1``,
``norm2``, ``mlp/fc1``, ``mlp/fc2``. Initialisation is timm's: linear kernels truncated normal
(0.02) with zero biases (the position-bias MLP's included), ``logit_scale`` log(10), ``q_bias``
and ``v_bias`` zero, and ``norm1`` / ``norm2`` scale and bias zero (``_init_respostnorm``: every
block starts as the identity).

Precision (what V2 adds to :mod:`.precision`'s table): the norms of queries and keys, the
clamped and exponentiated logit scale, the position-bias MLP and its sigmoid are float32; the
attention product takes ``dtype`` operands (the raw q and k whose logits are then scaled by the
inverse norms, or the normalised ones: :mod:`.attention`), its logits and softmax float32 as
in V1.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from swinjax.models.layers import kernel_sets, windows
from swinjax.models.layers.blocks import (
    LINEAR_OUT,
    DropPath,
    Mlp,
    additive_term,
    attend_and_project,
    dense_init,
    layer_norm,
    shifted_window_attention,
)
from swinjax.models.layers.linear import tokens_2d
from swinjax.models.layers.windows import Pair

Dtype = Any
LOGIT_SCALE_MAX = math.log(100.0)  # timm: clamp(logit_scale, max=log(1 / 0.01))
LOGIT_SCALE_INIT = math.log(10.0)
CPB_HIDDEN = 512  # width of the continuous-position-bias MLP
CPB_BIAS_MAX = 16.0  # the bias is 16 * sigmoid(MLP output)


def continuous_position_bias(
    mlp_0: nn.Module, mlp_2: nn.Module, window: Pair, pretrained_window: Pair
) -> jnp.ndarray:
    """The per-offset bias table of a window, 16 * sigmoid(MLP(log-spaced coordinates)):
    (T, heads) float32. The MLP (``mlp_0`` 2 -> 512, ReLU, ``mlp_2`` 512 -> heads: timm's
    ``cpb_mlp`` Sequential) runs on the numpy constant :func:`windows.relative_coords_table`."""
    coords_T2 = jnp.asarray(windows.relative_coords_table(window, pretrained_window))
    return CPB_BIAS_MAX * nn.sigmoid(mlp_2(nn.relu(mlp_0(coords_T2))).astype(jnp.float32))


class WindowAttentionV2(nn.Module, kw_only=True):
    """Scaled cosine attention inside windows, with a continuous position bias.

    logits = cos(q, k) * exp(min(logit_scale, log 100)) + 16 sigmoid(cpb) (+ shift mask), per
    head. Run through the kernel set's attention as V1's, given the per-head scale
    (``logit_scale_h``: each formulation computes the cosine its own way, see
    :mod:`.attention`), the bias (plus mask) as its additive term. Input
    ``x_BwNC`` (B * w, N, C); ``mask_wNN`` a numpy constant or None. ``pretrained_window``
    scales the bias MLP's coordinates ((0, 0): the window's own).
    """

    num_heads: int
    window: Pair
    pretrained_window: Pair = (0, 0)
    qkv_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernels: str = "auto"

    @nn.compact
    def __call__(
        self, x_BwNC: jnp.ndarray, mask_wNN: np.ndarray | None, deterministic: bool
    ) -> jnp.ndarray:
        ks = kernel_sets.get(self.kernels)
        Bw, N, C = x_BwNC.shape
        heads = self.num_heads
        dense = dict(kernel_init=dense_init("timm"), dtype=self.dtype, param_dtype=self.param_dtype)
        qkv = ks.dense(features=3 * C, use_bias=False, name="qkv", **dense)(tokens_2d(x_BwNC))
        if self.qkv_bias:
            zeros = nn.initializers.zeros
            q_bias_C = self.param("q_bias", zeros, (C,), self.param_dtype)
            v_bias_C = self.param("v_bias", zeros, (C,), self.param_dtype)
            bias_3C = jnp.concatenate([q_bias_C, jnp.zeros_like(q_bias_C), v_bias_C])
            qkv = qkv + bias_3C.astype(qkv.dtype)
        qkv = checkpoint_name(qkv, LINEAR_OUT).reshape(Bw, N, 3, heads, C // heads)
        logit_scale_h11 = self.param(
            "logit_scale",
            nn.initializers.constant(LOGIT_SCALE_INIT),
            (heads, 1, 1),
            self.param_dtype,
        )
        clamped_h = jnp.minimum(logit_scale_h11[:, 0, 0].astype(jnp.float32), LOGIT_SCALE_MAX)
        scale_h = jnp.exp(clamped_h)
        cpb = dict(kernel_init=dense_init("timm"), dtype=jnp.float32, param_dtype=self.param_dtype)
        table_Th = continuous_position_bias(
            ks.dense(features=CPB_HIDDEN, name="cpb_mlp_0", **cpb),
            ks.dense(features=heads, use_bias=False, name="cpb_mlp_2", **cpb),
            self.window,
            self.pretrained_window,
        )
        add_wNNh = additive_term(table_Th, self.window, mask_wNN)
        return attend_and_project(
            self,
            qkv[:, :, 0],
            qkv[:, :, 1],
            qkv[:, :, 2],
            add_wNNh,
            dense=dense,
            deterministic=deterministic,
            logit_scale_h=scale_h,
        )


class SwinBlockV2(nn.Module, kw_only=True):
    """(Shifted-)window cosine attention and MLP, each with a residual post-norm:
    x + drop_path(norm1(attn(x))), then x + drop_path(norm2(mlp(x))); (B, H, W, C) in and out.

    ``window`` and ``shift`` are the stage's after :func:`windows.clamp_window`;
    ``pretrained_window`` is the stage's as given (timm's ``pretrained_window_size``).
    """

    num_heads: int
    window: Pair
    shift: Pair
    pretrained_window: Pair = (0, 0)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: float = 0.0
    drop_path_mode: str = "sample"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernels: str = "auto"

    @nn.compact
    def __call__(self, x_BHWC: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        C = x_BHWC.shape[-1]
        norm = dict(dtype=self.dtype, param_dtype=self.param_dtype, zero_init=True)
        attn = WindowAttentionV2(
            num_heads=self.num_heads,
            window=self.window,
            pretrained_window=self.pretrained_window,
            qkv_bias=self.qkv_bias,
            attn_drop=self.attn_drop,
            proj_drop=self.drop,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernels=self.kernels,
            name="attn",
        )
        y = shifted_window_attention(
            lambda y_BwNC, mask_wNN: attn(y_BwNC, mask_wNN, deterministic),
            x_BHWC,
            self.window,
            self.shift,
        )
        drop_path = dict(rate=self.drop_path, mode=self.drop_path_mode, kernels=self.kernels)
        x_BHWC = x_BHWC + DropPath(**drop_path)(layer_norm("norm1", **norm)(y), deterministic)

        y = Mlp(
            hidden_dim=int(C * self.mlp_ratio),
            drop=self.drop,
            weight_init="timm",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernels=self.kernels,
            name="mlp",
        )(x_BHWC, deterministic)
        return x_BHWC + DropPath(**drop_path)(layer_norm("norm2", **norm)(y), deterministic)
