"""One stage of the Swin Transformer, V1 or V2: patch merging at its start (timm's layout), then
its blocks (:class:`.blocks.SwinBlock` or :class:`.blocks_v2.SwinBlockV2`), regular and shifted
windows alternating, each optionally rematerialised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from swinjax.errors import ConfigError
from swinjax.models.layers.blocks import REMAT_POLICIES, PatchMerging, SwinBlock
from swinjax.models.layers.blocks_v2 import SwinBlockV2
from swinjax.models.layers.windows import Pair

Dtype = Any
VERSIONS = (1, 2)


def validate_version(
    version: int, pretrained_window_sizes: tuple[int, ...], num_stages: int, weight_init: str
) -> None:
    """ConfigError naming the field where ``version`` or ``pretrained_window_sizes`` is
    impossible, or where a V1-only setting is asked of a V2 model."""
    pretrained = tuple(pretrained_window_sizes)
    if version not in VERSIONS:
        raise ConfigError(f"version {version!r} is not one of {VERSIONS} (1: Swin, 2: Swin V2)")
    if pretrained and version != 2:
        raise ConfigError(
            f"pretrained_window_sizes {pretrained} is Swin V2's (it scales the continuous "
            "position bias); set version=2, or leave it () for a V1 model"
        )
    if pretrained and (len(pretrained) != num_stages or min(pretrained) < 0):
        raise ConfigError(
            f"pretrained_window_sizes {pretrained}: give one size >= 0 per stage ({num_stages} "
            "stages; 0 = the stage's own window), or () for none"
        )
    if version == 2 and weight_init != "timm":
        raise ConfigError(
            f"weight_init {weight_init!r} reproduces the Keras example's V1 model; Swin V2 "
            "initialises as timm's SwinTransformerV2 (zero post-norms, logit scale log 10): "
            "use weight_init='timm' with version=2"
        )


class SwinStage(nn.Module, kw_only=True):
    """One stage: optional patch merging at its start (timm layout), then ``depth`` blocks.

    Blocks alternate regular (even j) and shifted (odd j) windows. ``drop_paths`` holds one rate
    per block. ``remat`` (a key of :data:`REMAT_POLICIES`) rematerialises each block
    (``nn.remat``: the parameter names and values are unchanged). ``version`` 2 builds Swin V2
    blocks (``pretrained_window`` scales their position-bias coordinates) and merges patches
    reduction first, norm last; ``weight_init`` is V1's only (V2 initialises as timm's).
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
    version: int = 1
    pretrained_window: Pair = (0, 0)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernels: str = "auto"
    remat: str = "none"

    @nn.compact
    def __call__(self, x_BHWC: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
        if self.downsample:
            x_BHWC = PatchMerging(
                out_dim=self.dim,
                norm=self.merge_norm,
                norm_last=self.version == 2,
                weight_init=self.weight_init,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernels=self.kernels,
                name="downsample",
            )(x_BHWC)
        block, extra = SwinBlock, dict(weight_init=self.weight_init)
        if self.version == 2:
            block, extra = SwinBlockV2, dict(pretrained_window=self.pretrained_window)
        if self.remat != "none":  # deterministic (argument 2, counting self) is a Python bool
            block = nn.remat(block, static_argnums=(2,), policy=REMAT_POLICIES[self.remat])
        for j in range(self.depth):
            x_BHWC = block(
                num_heads=self.num_heads,
                window=self.window,
                shift=self.shift if j % 2 else (0, 0),
                mlp_ratio=self.mlp_ratio,
                qkv_bias=self.qkv_bias,
                drop=self.drop,
                attn_drop=self.attn_drop,
                drop_path=self.drop_paths[j],
                drop_path_mode=self.drop_path_mode,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernels=self.kernels,
                name=f"blocks_{j}",
                **extra,
            )(x_BHWC, deterministic)
        return x_BHWC
