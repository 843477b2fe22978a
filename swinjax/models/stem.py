"""The patch embedding's two forms, chosen by ``SwinTransformer.stem``.

- ``"patch"`` (the default, timm's): :class:`swinjax.models.layers.blocks.PatchEmbed`, one
  convolution with kernel = stride = patch size (``patch_embed/proj``), then LayerNorm
  (``patch_embed/norm``).
- ``"conv"``: a convolutional stem (Xiao et al. 2021, "Early convolutions help transformers see
  better"): 3x3 convolutions, each followed by a norm and an activation, the first
  ``log2(patch)`` of them with stride 2 (per axis) so that the stem reaches the patch size, then
  a 1x1 convolution to ``embed_dim`` and the same LayerNorm as the patch form. Its parameters are
  ``patch_embed/conv_{i}``, ``patch_embed/conv_norm_{i}`` and ``patch_embed/conv_proj``: names
  timm's Swin has not, so a conv-stem model never silently takes timm's ``proj`` weights.

The paper's norm is BatchNorm; this stem uses LayerNorm over channels (as ConvNeXt's) with GELU,
so that the model keeps no batch statistics: a train state holds parameters only, and every
example's output is independent of the rest of its batch (populations, padded evaluation).
``stem_channels`` sets the 3x3 convolutions' widths; () picks ``log2(max patch)`` stride-2
convolutions widening to ``embed_dim`` plus one stride-1 (e.g. patch 4, embed 96: 24, 48, 96).
``stem_strides`` sets each convolution's stride (1 or 2, both axes; their product is the patch
size); () puts the stride-2 convolutions first (cheapest). On small images a stride-1
convolution at full resolution first (e.g. ``(1, 2, 1)`` for patch 2) sees finer detail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from swinjax.errors import ConfigError
from swinjax.models.layers.blocks import PatchEmbed, layer_norm
from swinjax.models.layers.windows import Pair, to_pair

STEMS = ("patch", "conv")


def _halvings(p: int) -> int | None:
    """log2(p) for a power of two, else None."""
    return int(math.log2(p)) if p >= 1 and p & (p - 1) == 0 else None


def conv_layout(
    patch_size: Pair, embed_dim: int, stem_channels: Sequence[int], stem_strides: Sequence[int] = ()
) -> tuple[tuple[int, Pair], ...]:
    """``(channels, strides)`` of each 3x3 convolution of the conv stem; ValueError naming the
    field where the patch size is not a power of two, ``stem_channels`` is too short or
    ``stem_strides`` does not reach the patch size."""
    halvings = [_halvings(p) for p in patch_size]
    if None in halvings:
        raise ConfigError(
            f"stem='conv' reaches the patch size by stride-2 convolutions: patch_size "
            f"{tuple(patch_size)} must be powers of two; use stem='patch'"
        )
    n = max(halvings)
    channels = tuple(int(c) for c in stem_channels) or tuple(
        max(embed_dim // 2 ** (n - i), 8) for i in range(n + 1)
    )
    if len(channels) < n or min(channels, default=1) < 1:
        raise ConfigError(
            f"stem_channels {tuple(stem_channels)}: patch_size {tuple(patch_size)} needs at "
            f"least {n} convolutions (widths >= 1), {n} of them with stride 2"
        )
    if tuple(stem_strides):
        strides = _explicit_strides(patch_size, channels, stem_strides)
    else:
        strides = [(1 + (i < halvings[0]), 1 + (i < halvings[1])) for i in range(len(channels))]
    return tuple(zip(channels, strides, strict=True))


def _explicit_strides(
    patch_size: Pair, channels: Sequence[int], stem_strides: Sequence[int]
) -> list[Pair]:
    """``stem_strides`` as per-axis pairs; ValueError unless there is one per convolution, each
    1 or 2, multiplying to the (square) patch size."""
    strides = tuple(int(s) for s in stem_strides)
    if (
        len(strides) != len(channels)
        or not set(strides) <= {1, 2}
        or patch_size[0] != patch_size[1]
        or math.prod(strides) != patch_size[0]
    ):
        raise ConfigError(
            f"stem_strides {strides}: give one stride (1 or 2) per 3x3 convolution "
            f"(stem_channels {tuple(channels)}) whose product is the square patch size "
            f"{tuple(patch_size)}; or () for the stride-2 convolutions first"
        )
    return [(s, s) for s in strides]


def validate_stem(
    stem: str,
    stem_channels: Sequence[int],
    patch_size: Pair,
    embed_dim: int,
    stem_strides: Sequence[int] = (),
) -> None:
    """ValueError naming the field for a stem that cannot be built."""
    if stem not in STEMS:
        raise ConfigError(f"stem {stem!r} is not one of {STEMS}")
    if stem == "patch" and (tuple(stem_channels) or tuple(stem_strides)):
        raise ConfigError(
            f"stem_channels {tuple(stem_channels)} / stem_strides {tuple(stem_strides)} "
            "are set but stem='patch'"
        )
    if stem == "conv":
        conv_layout(patch_size, embed_dim, stem_channels, stem_strides)


class ConvStem(nn.Module, kw_only=True):
    """(B, H, W, in_chans) -> (B, H/p, W/p, embed_dim) by 3x3 convolutions (module docstring)."""

    patch_size: Pair
    embed_dim: int
    stem_channels: tuple[int, ...] = ()
    stem_strides: tuple[int, ...] = ()
    norm: bool = True
    weight_init: str = "timm"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BHWC: jnp.ndarray) -> jnp.ndarray:
        keras = self.weight_init == "keras"
        conv_init = nn.initializers.glorot_uniform() if keras else nn.initializers.he_normal()
        norm = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for i, (channels, strides) in enumerate(
            conv_layout(self.patch_size, self.embed_dim, self.stem_channels, self.stem_strides)
        ):
            x_BHWC = nn.Conv(
                features=channels,
                kernel_size=(3, 3),
                strides=strides,
                padding=((1, 1), (1, 1)),
                use_bias=False,  # the norm's bias follows
                kernel_init=conv_init,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"conv_{i}",
            )(x_BHWC)
            x_BHWC = layer_norm(f"conv_norm_{i}", **norm)(x_BHWC)
            x_BHWC = nn.gelu(x_BHWC, approximate=False)
        x_BHWC = nn.Conv(
            features=self.embed_dim,
            kernel_size=(1, 1),
            kernel_init=nn.initializers.glorot_uniform()
            if keras
            else nn.initializers.lecun_normal(),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv_proj",
        )(x_BHWC)
        if self.norm:
            x_BHWC = layer_norm("norm", **norm)(x_BHWC)
        return x_BHWC


def patch_embedding(model: Any) -> nn.Module:
    """The patch embedding ``model`` (a ``SwinTransformer``) asks for, named ``patch_embed``;
    call it inside the model's compact ``__call__``."""
    patch = to_pair(model.patch_size)
    common = dict(
        norm=model.patch_norm,
        weight_init=model.weight_init,
        dtype=model.dtype,
        param_dtype=model.param_dtype,
        name="patch_embed",
    )
    if model.stem == "conv":
        channels = tuple(int(c) for c in model.stem_channels)
        strides = tuple(int(c) for c in model.stem_strides)
        return ConvStem(
            patch_size=patch,
            embed_dim=model.embed_dim,
            stem_channels=channels,
            stem_strides=strides,
            **common,
        )
    return PatchEmbed(patch_size=patch, embed_dim=model.embed_dim, **common)
