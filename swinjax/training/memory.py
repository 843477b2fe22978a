"""Memory arithmetic: the bytes one device needs to train a Swin, predicted from shapes alone.

Nothing is compiled or allocated: the parameters come from ``presets.param_shapes`` (exact), the
activations from the model's stage geometry (``SwinTransformer.stage_specs()``), counting per
Swin block the tensors the backward pass keeps under each ``remat`` policy
(:data:`swinjax.models.layers.blocks.REMAT_POLICIES`), in the compute dtype.

    model = model_at("swin_b", 384, dtype="bfloat16", remat="full")
    p = predict(model, global_batch=512, grad_accum_steps=4, sharding="fsdp", devices=8)
    p.total_bytes                                   # per device
    largest_microbatch(model, device_bytes=40 * GIB, sharding="fsdp", devices=8)

What is counted (per device):

- state (:func:`state_bytes`): the float32 parameters, AdamW's two moments (the first in
  bfloat16 with ``adam_mu_dtype="bfloat16"``), the EMA if on; under ``fsdp`` each array's shard
  (:func:`swinjax.training.sharding.sharded_axis`: small arrays stay whole), else the whole;
- step buffers: the float32 gradients (sharded like the state under ``fsdp``), a second
  gradient tree as the accumulation carry when ``grad_accum_steps`` > 1, and under ``fsdp`` on
  several devices one whole copy of the parameters in the compute dtype (the all-gathered
  weights, assumed alive from the forward to the backward pass: an upper bound);
- activations (:func:`activation_bytes`), per image of the microbatch: the tensors kept for the
  backward pass plus the backward pass's working set (the largest block recomputed under remat,
  and the gradients in flight).

These are predictions of the formulation's arithmetic, calibrated against what JAX saves for the
backward pass and XLA:CPU's buffer assignment only (:mod:`.memory_calibration`;
docs/performance.md, "Memory arithmetic"); XLA:GPU's and XLA:TPU's buffer
assignment, fusion and rematerialisation differ, so check them the day an accelerator is lent.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import numpy as np

from swinjax.errors import ConfigError
from swinjax.models import create_model
from swinjax.models.layers import windows
from swinjax.models.layers.blocks import REMAT_POLICIES
from swinjax.models.presets import param_shapes
from swinjax.models.swin import StageSpec, SwinTransformer
from swinjax.training import sharding as sharding_lib

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
PARAM_BYTES = 4  # the precision policy: parameters, gradients and Adam's second moment float32
STATS_BYTES = 8  # a LayerNorm's float32 mean and reciprocal deviation, per token
DEFAULT_HEADROOM = 0.1  # of a device's memory left to the runtime, fragmentation and the inputs
# Window size of the ImageNet presets by image size (timm: swin_*_patch4_window7_224 and
# swin_*_patch4_window12_384; 7 does not divide 384's stage resolutions 96, 48, 24, 12).
TIMM_WINDOWS = {224: 7, 384: 12}


def model_at(name: str, img_size: int, **overrides: Any) -> SwinTransformer:
    """Preset ``name`` at ``img_size``, with timm's window for that size (:data:`TIMM_WINDOWS`)
    where the preset is an ImageNet one (224 x 224 by default) and none is given."""
    default = create_model(name)
    if default.img_size == 224 and img_size in TIMM_WINDOWS:
        overrides.setdefault("window_size", TIMM_WINDOWS[img_size])
    return create_model(name, img_size=img_size, **overrides)


# ------------------------------------------------------------------------------------ state


@dataclasses.dataclass(frozen=True)
class StateBytes:
    """Bytes on one device: the train state (``params``, ``mu``, ``nu``, ``ema``) and the
    step's buffers that scale with the parameters (``grads``, ``gathered``)."""

    params: int
    mu: int
    nu: int
    ema: int
    grads: int
    gathered: int

    @property
    def state(self) -> int:
        """What the train state holds between steps: parameters, optimizer moments, EMA."""
        return self.params + self.mu + self.nu + self.ema

    @property
    def total(self) -> int:
        return self.state + self.grads + self.gathered


def _check_choice(what: str, value: Any, choices: tuple, fix: str) -> None:
    if value not in choices:
        raise ConfigError(f"{what}={value!r} is not one of {choices}; {fix}")


def _check_positive_int(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what}={value!r}: must be an integer >= 1")


def state_bytes(
    model: SwinTransformer,
    *,
    sharding: str = "replicated",
    devices: int = 1,
    adam_mu_dtype: str = "float32",
    ema: bool = False,
    grad_accum_steps: int = 1,
) -> StateBytes:
    """The state and the parameter-sized step buffers of training ``model``, per device (see the
    module docstring). The compute dtype is the model's ``dtype``."""
    _check_choice("sharding", sharding, sharding_lib.MODES, "use 'replicated' or 'fsdp'")
    _check_choice("adam_mu_dtype", adam_mu_dtype, tuple(DTYPE_BYTES), "use 'float32' or 'bfloat16'")
    _check_positive_int("devices", devices)
    _check_positive_int("grad_accum_steps", grad_accum_steps)
    whole, local = 0, 0
    for shape in _param_leaf_shapes(model.clone(dtype=np.float32, remat="none", kernels="auto")):
        size = math.prod(shape)
        axis = sharding_lib.sharded_axis(shape, devices) if sharding == "fsdp" else None
        whole += size
        local += size if axis is None else size // devices
    compute = DTYPE_BYTES[_dtype_name(model.dtype)]
    gathered = whole * compute if sharding == "fsdp" and devices > 1 else 0
    return StateBytes(
        params=local * PARAM_BYTES,
        mu=local * DTYPE_BYTES[adam_mu_dtype],
        nu=local * PARAM_BYTES,
        ema=local * PARAM_BYTES if ema else 0,
        grads=local * PARAM_BYTES * (2 if grad_accum_steps > 1 else 1),
        gathered=gathered,
    )


@functools.lru_cache(maxsize=64)
def _param_leaf_shapes(model: SwinTransformer) -> tuple[tuple[int, ...], ...]:
    """The shapes of ``model``'s parameters (traced once per architecture: neither the compute
    dtype, remat nor the kernel set changes them)."""
    return tuple(tuple(leaf.shape) for leaf in jax.tree.leaves(param_shapes(model)))


def _dtype_name(dtype: Any) -> str:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    _check_choice("dtype", name, tuple(DTYPE_BYTES), "use 'float32' or 'bfloat16'")
    return name


# ------------------------------------------------------------------------------ activations


def block_tensors(
    spec: StageSpec, *, mlp_ratio: float, dtype_bytes: int, drop: float, attn_drop: float
) -> dict[str, int]:
    """Bytes per image of the tensors one Swin block of stage ``spec`` keeps for its backward
    pass without remat, by name (the formulation of ``blocks.SwinBlock``: pre-norm attention and
    MLP; logits and softmax float32, the probabilities cast to the compute dtype for the
    product with v; dropout masks as float32 scales)."""
    T = spec.resolution[0] * spec.resolution[1]  # tokens of the image at this stage
    C, h, b = spec.dim, spec.num_heads, dtype_bytes
    N = spec.window[0] * spec.window[1]
    hidden = int(C * mlp_ratio)
    pairs = T * N * h  # (query, key) pairs of every window and head of one image
    tensors = {
        "norm1_in": T * C * b,  # the block's input
        "norms_stats": 2 * T * STATS_BYTES,
        "qkv_in": T * C * b,
        "q_k_v": 3 * T * C * b,
        "attn_probs": pairs * 4,
        "attn_probs_cast": pairs * b if b != 4 else 0,
        "proj_in": T * C * b,
        "norm2_in": T * C * b,
        "fc1_in": T * C * b,
        "gelu_in": T * hidden * b,  # fc1's output
        "fc2_in": T * hidden * b,
    }
    if attn_drop > 0:
        tensors["attn_drop_mask"] = pairs * 4
    if drop > 0:
        tensors["drop_masks"] = (2 * T * C + T * hidden) * 4  # after proj, GELU, fc2
    return tensors


def _blocks_policy_bytes(tensors: dict[str, int]) -> int:
    """What remat="blocks" keeps of a block: its input and its linear layers' outputs (qkv,
    proj, fc1, fc2; proj's and fc2's have the size of the input)."""
    return 3 * tensors["norm1_in"] + tensors["q_k_v"] + tensors["gelu_in"]


def _outside_blocks(model: SwinTransformer, specs: tuple[StageSpec, ...], b: int) -> int:
    """Bytes per image kept outside the Swin blocks (never rematerialised): the float32 input
    and its cast, the patch embedding's output, each patch merging's concatenated input and
    LayerNorm output, the final LayerNorm's input."""
    img = windows.to_pair(model.img_size)
    pixels = img[0] * img[1] * model.in_chans
    first = specs[0]
    tokens0 = first.resolution[0] * first.resolution[1]
    total = pixels * (4 + b) + tokens0 * first.dim * b + tokens0 * STATS_BYTES
    prev_tokens, prev_dim = tokens0, first.dim
    for s in specs:
        if s.downsample:
            total += 2 * prev_tokens * prev_dim * b + prev_tokens // 4 * STATS_BYTES
        prev_tokens, prev_dim = s.resolution[0] * s.resolution[1], s.dim
    return total + prev_tokens * prev_dim * b + prev_tokens * STATS_BYTES


@dataclasses.dataclass(frozen=True)
class ActivationBytes:
    """Bytes per image of the microbatch: ``saved`` from the forward to the backward pass,
    ``working`` the backward pass's own (the largest block recomputed under remat, and the
    gradients in flight: twice the largest tensor of any block)."""

    saved: int
    working: int

    @property
    def total(self) -> int:
        return self.saved + self.working


def activation_bytes(model: SwinTransformer) -> ActivationBytes:
    """Activations per image for training ``model`` with its ``dtype`` and ``remat``."""
    _check_choice("remat", model.remat, tuple(REMAT_POLICIES), "use 'none', 'blocks' or 'full'")
    b = DTYPE_BYTES[_dtype_name(model.dtype)]
    specs = model.stage_specs()
    saved, largest_block, largest_tensor = _outside_blocks(model, specs, b), 0, 0
    for s in specs:
        if s.depth == 0:
            continue
        tensors = block_tensors(
            s,
            mlp_ratio=model.mlp_ratio,
            dtype_bytes=b,
            drop=model.drop_rate,
            attn_drop=model.attn_drop_rate,
        )
        kept = {
            "none": sum(tensors.values()),
            "blocks": _blocks_policy_bytes(tensors),
            "full": tensors["norm1_in"],
        }[model.remat]
        saved += s.depth * kept
        largest_block = max(largest_block, sum(tensors.values()))
        largest_tensor = max(largest_tensor, *tensors.values())
    recomputed = largest_block if model.remat != "none" else 0
    return ActivationBytes(saved=saved, working=recomputed + 2 * largest_tensor)


# ------------------------------------------------------------------------------- prediction


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Bytes one device needs for one training step (see the module docstring)."""

    state: StateBytes
    per_image: ActivationBytes
    microbatch: int  # images per device per microbatch

    @property
    def activations(self) -> int:
        return self.microbatch * self.per_image.total

    @property
    def total_bytes(self) -> int:
        return self.state.total + self.activations


def microbatch_per_device(global_batch: int, grad_accum_steps: int, devices: int) -> int:
    """Images one device runs at a time: the global batch split over the devices, then into
    ``grad_accum_steps`` microbatches; ConfigError where it does not divide."""
    for what, v in (("global_batch", global_batch), ("grad_accum_steps", grad_accum_steps)):
        _check_positive_int(what, v)
    _check_positive_int("devices", devices)
    if global_batch % (devices * grad_accum_steps):
        raise ConfigError(
            f"global_batch={global_batch} is not divisible by devices x grad_accum_steps = "
            f"{devices} x {grad_accum_steps}; choose a batch that is a multiple of "
            f"{devices * grad_accum_steps}, or another grad_accum_steps"
        )
    return global_batch // (devices * grad_accum_steps)


def predict(
    model: SwinTransformer,
    *,
    global_batch: int,
    grad_accum_steps: int = 1,
    sharding: str = "replicated",
    devices: int = 1,
    adam_mu_dtype: str = "float32",
    ema: bool = False,
) -> Prediction:
    """Total bytes per device of training ``model`` (its ``dtype`` and ``remat``) on
    ``global_batch`` images per step over ``devices`` with ``grad_accum_steps`` microbatches."""
    micro = microbatch_per_device(global_batch, grad_accum_steps, devices)
    state = state_bytes(
        model,
        sharding=sharding,
        devices=devices,
        adam_mu_dtype=adam_mu_dtype,
        ema=ema,
        grad_accum_steps=grad_accum_steps,
    )
    return Prediction(state=state, per_image=activation_bytes(model), microbatch=micro)


def largest_microbatch(
    model: SwinTransformer,
    *,
    device_bytes: int,
    headroom: float = DEFAULT_HEADROOM,
    state: StateBytes | None = None,
    **state_kwargs: Any,
) -> int:
    """The most images per device per microbatch that fit in ``device_bytes`` less a fraction
    ``headroom`` of it, with gradient accumulation on (the carry counted); 0 where not even
    the state fits. ``state``: precomputed :func:`state_bytes`; else ``state_kwargs`` for it."""
    if not 0.0 <= headroom < 1.0:
        raise ConfigError(f"headroom={headroom!r}: a fraction of the memory, in [0, 1)")
    if isinstance(device_bytes, bool) or not device_bytes > 0:
        raise ConfigError(f"device_bytes={device_bytes!r}: must be > 0 (e.g. 40 * GIB)")
    if state is None:
        state = state_bytes(model, **{"grad_accum_steps": 2, **state_kwargs})
    free = device_bytes * (1.0 - headroom) - state.total
    return max(0, int(free // activation_bytes(model).total))


def accum_steps_needed(global_batch: int, devices: int, microbatch: int) -> int | None:
    """The fewest ``grad_accum_steps`` k that run ``global_batch`` on ``devices`` in
    microbatches of at most ``microbatch`` images per device (k dividing the per-device
    batch); None where no k does (``microbatch`` < 1, or the batch does not split)."""
    _check_positive_int("global_batch", global_batch)
    _check_positive_int("devices", devices)
    if microbatch < 1 or global_batch % devices:
        return None
    per_device = global_batch // devices
    for k in range(1, per_device + 1):
        if per_device % k == 0 and per_device // k <= microbatch:
            return k
    return None
