"""The Swin Transformer (Liu et al., 2021) as a Flax linen module.

    model = SwinTransformer(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
    variables = model.init(jax.random.key(0), x_BHWC)               # {"params": ...}
    logits_BK = model.apply(variables, x_BHWC, train=False)
    logits_BK = model.apply(variables, x_BHWC, train=True, rngs={"dropout": key})

The named architectures are in :mod:`swinjax.models.presets` (``create_model("swin_t")``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from swinjax.errors import ConfigError
from swinjax.models import stem as stems
from swinjax.models.layers import kernel_sets, windows
from swinjax.models.layers.blocks import (
    DROP_PATH_MODES,
    REMAT_POLICIES,
    WEIGHT_INITS,
    dense_init,
    layer_norm,
)
from swinjax.models.layers.dropout import Dropout
from swinjax.models.layers.stage import SwinStage, validate_version
from swinjax.models.layers.windows import Pair


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """Static geometry of one stage, derived (and validated) from the model's fields."""

    dim: int
    depth: int
    resolution: Pair  # feature map inside the stage, after its patch merging
    downsample: bool
    num_heads: int
    window: Pair
    shift: Pair
    drop_paths: tuple[float, ...]
    pretrained_window: Pair = (0, 0)  # Swin V2's, as given (not clamped)


class SwinTransformer(nn.Module, kw_only=True):
    """Swin Transformer classifier: NHWC images (B, H, W, in_chans) -> logits (B, num_classes).

    Fields keep the names and meanings of timm's / the official constructor:
    ``drop_rate`` is the dropout after the patch embedding, after attention's output projection
    and inside the MLP; ``attn_drop_rate`` is dropout on attention probabilities;
    ``drop_path_rate`` is the stochastic-depth rate of the last block, rising linearly from 0 over
    all blocks; ``ape`` adds a learned absolute position embedding; ``patch_norm`` a LayerNorm
    after the patch embedding. Stage i > 0 starts with patch merging (timm's layout); a stage of
    depth 0 is a lone patch merging.

    Extensions, whose defaults are the paper's: ``pos_drop_rate`` (dropout after the embedding,
    None: ``drop_rate``), ``merge_norm`` (LayerNorm in patch merging), ``final_norm``,
    ``drop_path_mode`` ("sample" per-sample stochastic depth, "element" element-wise dropout as
    the Keras example), ``drop_path_schedule`` ("linear" or "constant"), ``weight_init``
    ("timm" or "keras" initializers), ``stem``, ``stem_channels`` and ``stem_strides`` (the
    patch embedding: :mod:`swinjax.models.stem`), ``dtype`` (compute) and ``param_dtype``.

    ``version`` 2 is Swin V2 (Liu et al., 2022; timm's ``SwinTransformerV2``): scaled cosine
    attention with a continuous position bias, residual post-norm blocks, patch merging that
    normalises after its reduction (:mod:`swinjax.models.layers.blocks_v2`); its
    ``pretrained_window_sizes`` (one per stage, timm's meaning: 0 or () the stage's own window)
    scale the position-bias coordinates of a model fine-tuned from another window size.

    How it is computed, never what (the parameters and dropout masks are the same for every
    setting): ``kernels`` ("auto", "reference" or "cpu", :mod:`swinjax.models.layers.kernel_sets`;
    "auto" is resolved when traced, by JAX's default backend) and ``remat`` ("none", "blocks" or
    "full": rematerialised Swin blocks, :data:`swinjax.models.layers.blocks.REMAT_POLICIES`).
    """

    img_size: int | tuple[int, int] = 224
    patch_size: int | tuple[int, int] = 4
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int | tuple[int, int] = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    ape: bool = False
    patch_norm: bool = True
    pos_drop_rate: float | None = None
    merge_norm: bool = True
    final_norm: bool = True
    drop_path_mode: str = "sample"
    drop_path_schedule: str = "linear"
    weight_init: str = "timm"
    stem: str = "patch"  # "conv": 3x3 convolutions instead (swinjax.models.stem; not timm's)
    stem_channels: tuple[int, ...] = ()  # stem="conv": their widths; (): derived
    stem_strides: tuple[int, ...] = ()  # stem="conv": their strides; (): stride-2 ones first
    version: int = 1  # 2: Swin V2
    pretrained_window_sizes: tuple[int, ...] = ()  # V2, per stage: 0 or (): the stage's window
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernels: str = "auto"
    remat: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stage_specs()  # validate every hyperparameter at construction, before any tracing
        kernel_sets.validate_kernels(self.kernels)
        _check(
            self.remat in REMAT_POLICIES,
            f"remat {self.remat!r} is not one of {tuple(REMAT_POLICIES)}",
        )

    def _validate_fields(self) -> tuple[Pair, Pair]:
        """(image size, patch size) as pairs; ValueError naming any field out of range."""
        img, patch = windows.to_pair(self.img_size), windows.to_pair(self.patch_size)
        window = windows.to_pair(self.window_size)
        depths, heads = tuple(self.depths), tuple(self.num_heads)
        _check(min(img + patch + window) > 0, "img_size, patch_size and window_size must be > 0")
        _check(
            len(depths) >= 1 and len(depths) == len(heads),
            f"depths {depths} and num_heads {heads} must be non-empty and of equal length",
        )
        _check(min(depths) >= 0 and min(heads) >= 1, "depths must be >= 0 and num_heads >= 1")
        _check(
            img[0] % patch[0] == 0 and img[1] % patch[1] == 0,
            f"img_size {img} is not divisible by patch_size {patch}; choose an image size "
            "that is a multiple of the patch size",
        )
        _check(
            self.embed_dim >= 1 and self.num_classes >= 0 and self.in_chans >= 1,
            "embed_dim and in_chans must be >= 1, num_classes >= 0",
        )
        _check(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            _check_rate(name, getattr(self, name))
        if self.pos_drop_rate is not None:
            _check_rate("pos_drop_rate", self.pos_drop_rate)
        _check(
            self.drop_path_mode in DROP_PATH_MODES,
            f"drop_path_mode {self.drop_path_mode!r} is not one of {DROP_PATH_MODES}",
        )
        _check(
            self.drop_path_schedule in ("linear", "constant"),
            f"drop_path_schedule {self.drop_path_schedule!r} is not 'linear' or 'constant'",
        )
        _check(
            self.weight_init in WEIGHT_INITS,
            f"weight_init {self.weight_init!r} is not one of {WEIGHT_INITS}",
        )
        stems.validate_stem(self.stem, self.stem_channels, patch, self.embed_dim, self.stem_strides)
        validate_version(
            self.version, tuple(self.pretrained_window_sizes), len(depths), self.weight_init
        )

        return img, patch

    def stage_specs(self) -> tuple[StageSpec, ...]:
        """Per-stage geometry; raises ValueError naming the field for any impossible setting."""
        img, patch = self._validate_fields()
        window = windows.to_pair(self.window_size)
        depths, heads = tuple(self.depths), tuple(self.num_heads)
        total = sum(depths)
        if self.drop_path_schedule == "linear":
            rates = [float(r) for r in np.linspace(0.0, self.drop_path_rate, total)]
        else:
            rates = [float(self.drop_path_rate)] * total
        res = (img[0] // patch[0], img[1] // patch[1])
        pretrained = tuple(self.pretrained_window_sizes)
        specs, start = [], 0
        for i, (depth, nh) in enumerate(zip(depths, heads, strict=True)):
            dim = self.embed_dim * 2**i
            if i > 0:
                _check(
                    res[0] % 2 == 0 and res[1] % 2 == 0,
                    f"stage {i} merges 2x2 patches but stage {i - 1}'s resolution {res} is "
                    "odd; use an image size giving even resolutions, or fewer stages",
                )
                res = (res[0] // 2, res[1] // 2)
            win, shift = windows.clamp_window(res, window, (window[0] // 2, window[1] // 2))
            if depth > 0:
                _check(
                    dim % nh == 0,
                    f"stage {i}: width {dim} (embed_dim * 2**{i}) is not divisible by "
                    f"num_heads[{i}] = {nh}",
                )
                _check(
                    res[0] % win[0] == 0 and res[1] % win[1] == 0,
                    f"stage {i}: resolution {res} is not divisible by window {win}; pick a "
                    "window_size dividing every stage's resolution (e.g. 7 for 224, 4 for 32)",
                )
            specs.append(
                StageSpec(
                    dim=dim,
                    depth=depth,
                    resolution=res,
                    downsample=i > 0,
                    num_heads=nh,
                    window=win,
                    shift=shift,
                    drop_paths=tuple(rates[start : start + depth]),
                    pretrained_window=windows.to_pair(pretrained[i]) if pretrained else (0, 0),
                )
            )
            start += depth
        return tuple(specs)

    def __call__(self, images_BHWC: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """Logits (B, num_classes), float32; the pooled features (B, C) when num_classes is 0."""
        return self._forward(images_BHWC, train, stop="logits")[0]

    def forward_features(self, images_BHWC: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """The last stage's tokens after the final LayerNorm, (B, H/32, W/32, C) for a patch-4
        model: what the head pools (timm's ``forward_features``, NHWC)."""
        return self._forward(images_BHWC, train, stop="features")[0]

    def forward_head(self, x_BHWC: jnp.ndarray, pre_logits: bool = False) -> jnp.ndarray:
        """The head on :meth:`forward_features`' output: the pooled (B, C) float32 vector with
        ``pre_logits``, else the logits (timm's ``forward_head``)."""
        if pre_logits:
            return jnp.mean(x_BHWC.astype(jnp.float32), axis=(1, 2))
        return self._forward(x_BHWC, False, start="features", stop="logits")[0]

    def forward_intermediates(
        self,
        images_BHWC: jnp.ndarray,
        indices: int | tuple[int, ...] | None = None,
        norm: bool = False,
        intermediates_only: bool = False,
        train: bool = False,
    ) -> list[jnp.ndarray] | tuple[jnp.ndarray, list[jnp.ndarray]]:
        """The output of each stage in ``indices`` as NHWC maps, as timm's
        ``forward_intermediates(output_fmt="NHWC")``: None takes every stage, an int n the last
        n, a tuple those stages (negative counts from the end). ``norm``: the final LayerNorm on
        the last stage's map where it is taken. Returns ``(forward_features output, list)``, or
        with ``intermediates_only`` the list alone."""
        take = stage_indices(len(self.depths), indices)
        x, maps = self._forward(images_BHWC, train, stop="features", take=take, norm=norm)
        return maps if intermediates_only else (x, maps)

    @nn.compact
    def _forward(
        self,
        x: jnp.ndarray,
        train: bool,
        *,
        start: str = "images",
        stop: str = "logits",
        take: tuple[int, ...] = (),
        norm: bool = False,
    ) -> tuple[jnp.ndarray, list[jnp.ndarray]]:
        """Images (or, with ``start="features"``, the final tokens) to logits (``stop="logits"``)
        or the final tokens (``"features"``), with the stage maps of ``take``."""
        maps: list[jnp.ndarray] = []
        if start == "images":
            x = self._trunk(x, train, take, norm, maps)
        if stop == "features":
            return x, maps
        head = ClassifierHead(
            num_classes=self.num_classes,
            weight_init=self.weight_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernels=self.kernels,
            name="head",
        )
        return head(x), maps

    def _trunk(
        self, images_BHWC: jnp.ndarray, train: bool, take: tuple, norm: bool, maps: list
    ) -> jnp.ndarray:
        """Patch embedding, stages and the final norm (called inside :meth:`_forward`, whose
        scope names the submodules); appends the stage maps of ``take`` to ``maps``."""
        specs = self.stage_specs()
        expected = (*windows.to_pair(self.img_size), self.in_chans)
        if tuple(images_BHWC.shape[1:]) != expected:
            raise ValueError(
                f"expected images of shape (B, {expected[0]}, {expected[1]}, "
                f"{expected[2]}) (NHWC), got {tuple(images_BHWC.shape)}"
            )
        deterministic = not train
        x = stems.patch_embedding(self)(images_BHWC.astype(self.dtype))
        B, H, W, C = x.shape
        if self.ape:
            init = (
                _uniform_pm(0.05)
                if self.weight_init == "keras"  # Keras' Embedding init
                else nn.initializers.truncated_normal(stddev=0.02)
            )
            pos = self.param("absolute_pos_embed", init, (1, H * W, C), self.param_dtype)
            x = x + pos.reshape(1, H, W, C).astype(self.dtype)
        pos_drop = self.drop_rate if self.pos_drop_rate is None else self.pos_drop_rate
        fused = kernel_sets.get(self.kernels).fused_dropout
        x = Dropout(rate=pos_drop, fused=fused)(x, deterministic=deterministic)
        final_norm = (
            layer_norm("norm", dtype=self.dtype, param_dtype=self.param_dtype)
            if self.final_norm
            else (lambda y: y)
        )
        last = len(specs) - 1
        for i, s in enumerate(specs):
            x = SwinStage(
                dim=s.dim,
                depth=s.depth,
                downsample=s.downsample,
                num_heads=s.num_heads,
                window=s.window,
                shift=s.shift,
                drop_paths=s.drop_paths,
                mlp_ratio=self.mlp_ratio,
                qkv_bias=self.qkv_bias,
                drop=self.drop_rate,
                attn_drop=self.attn_drop_rate,
                drop_path_mode=self.drop_path_mode,
                merge_norm=self.merge_norm,
                weight_init=self.weight_init,
                version=self.version,
                pretrained_window=s.pretrained_window,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernels=self.kernels,
                remat=self.remat,
                name=f"layers_{i}",
            )(x, deterministic)
            if i in take:
                maps.append(final_norm(x) if norm and i == last else x)
        return final_norm(x)


def stage_indices(num_stages: int, indices: int | tuple[int, ...] | None) -> tuple[int, ...]:
    """The stages ``forward_intermediates`` takes (timm's ``feature_take_indices``): None every
    stage, an int n the last n, a sequence those (negative from the end); sorted, validated."""
    if indices is None:
        return tuple(range(num_stages))
    if isinstance(indices, int):
        _check(
            0 < indices <= num_stages,
            f"indices={indices}: take the last n stages with 1 <= n <= {num_stages}",
        )
        return tuple(range(num_stages - indices, num_stages))
    chosen = []
    for i in indices:
        _check(
            -num_stages <= i < num_stages,
            f"stage index {i} is out of range for a model with {num_stages} stages",
        )
        chosen.append(i % num_stages)
    return tuple(sorted(set(chosen)))


class ClassifierHead(nn.Module, kw_only=True):
    """Global average pooling then a linear classifier (``head/fc``); float32 logits."""

    num_classes: int
    weight_init: str = "timm"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernels: str = "auto"

    @nn.compact
    def __call__(self, x_BHWC: jnp.ndarray) -> jnp.ndarray:
        pooled_BC = jnp.mean(x_BHWC.astype(jnp.float32), axis=(1, 2))
        if self.num_classes == 0:
            return pooled_BC
        logits = kernel_sets.get(self.kernels).dense(
            features=self.num_classes,
            kernel_init=dense_init(self.weight_init),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="fc",
        )(pooled_BC)
        return logits.astype(jnp.float32)


def _uniform_pm(limit: float) -> nn.initializers.Initializer:
    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    return init


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_rate(name: str, rate: float) -> None:
    _check(0.0 <= rate < 1.0, f"{name} must be in [0, 1), got {rate}")
