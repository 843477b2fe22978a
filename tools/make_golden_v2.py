"""Writes the Swin V2 timm parity fixtures and the timm counts under tests/golden/ (run by
`make golden`; needs torch + timm).

For each configuration (CONFIGS): a random-weight timm ``SwinTransformerV2`` (weights re-drawn at
O(1) scale as tools/make_golden.py does; ``logit_scale`` below the clamp at log(100) but for one
head above it, and the continuous-position-bias MLP scaled so that its sigmoid sees values of
about +-1, neither flat nor saturated; timm's float32 results checked within 5e-5 of its
float64 ones, so that the tests' 1e-4 measures swinjax, not float32 noise), its state dict in
timm's layout and in the official microsoft/Swin-Transformer V2 layout (patch merging at the end
of a stage, ``head.weight``, the buffers ``relative_coords_table``, ``relative_position_index`` and
``attn_mask`` saved), a uint8 NHWC image batch (the float input is ``u8 / 127.5 - 1``:
make_golden.py's ``u8_to_input``) and timm's float32 logits (``swinv2_<case>.npz/.json``). The
official layout is checked here against timm's own ``checkpoint_filter_fn``, and stored small:
its renamed tensors as (official key, timm key) pairs (``official_names``), only its buffers as
arrays (``official/<key>``).

Resized loads (RESIZED): a source fixture loaded by timm into a model of another image, window
or patch size the V2 way: timm's V2 ``checkpoint_filter_fn`` (buffers dropped, the patch
embedding resampled; attention has nothing to interpolate), a strict ``load_state_dict``, and the
target's ``pretrained_window_sizes`` set to the source's per-stage windows (the coordinate table
of the position-bias MLP is recomputed for the new window on that scale). Stored as
make_golden.py's: the target config, a uint8 image batch, timm's logits, the tensors the filter
changed (``adapted/<key>``).

Features (``swinv2_<case>_features.npz``): for the first image of each plain fixture's input,
timm's ``forward_features`` and ``forward_intermediates(indices=None, norm=True)`` stage maps,
stored NHWC, and the last stage's map without the final norm.

Counts (``timm_counts.json``): for every swinjax preset that timm has the architecture of (V2 and
V1), timm's parameter count and forward FLOPs per image at the preset's image size, counted by
``torch.utils.flop_counter.FlopCounterMode`` on the meta device (matrix products and
convolutions, 2 x M x N x K; elementwise ops are not counted), with the per-operator split.

    .venv-timm/bin/python tools/make_golden_v2.py --out tests/golden
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import timm
import torch
from make_golden import u8_to_input, write_meta  # tools/ is on sys.path when this file is run
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2, checkpoint_filter_fn
from torch.utils.flop_counter import FlopCounterMode

CONFIGS = {
    # Four stages at 64 with patch 4 and window 4: maps 16, 8, 4, 2; shifted windows in stages 0
    # and 1; in stage 2 the window equals the map (its second block runs unshifted), in stage 3
    # it clamps to the 2x2 map (timm's clamp rule).
    "swinv2_64": dict(
        img_size=64,
        patch_size=4,
        window_size=4,
        embed_dim=8,
        depths=(2, 2, 2, 1),
        num_heads=(1, 2, 2, 4),
        mlp_ratio=2.0,
        num_classes=10,
        pretrained_window_sizes=(0, 0, 0, 0),
        batch=2,
    ),
    # Window 8 with the coordinates scaled by other (pretrained) windows, as a fine-tuned
    # checkpoint's: maps 16 (window 8, shifted), 8 (window = map), 4 (window clamped to 4).
    "swinv2_pretrained": dict(
        img_size=64,
        patch_size=4,
        window_size=8,
        embed_dim=8,
        depths=(2, 2, 1),
        num_heads=(1, 2, 2),
        mlp_ratio=2.0,
        num_classes=10,
        pretrained_window_sizes=(4, 6, 3),
        batch=2,
    ),
    # 32x32 images, patch 2, window 4: shifted windows in stages 0 (16x16) and 1 (8x8).
    "swinv2_32": dict(
        img_size=32,
        patch_size=2,
        window_size=4,
        embed_dim=6,
        depths=(2, 2, 1),
        num_heads=(1, 2, 4),
        mlp_ratio=2.0,
        num_classes=10,
        pretrained_window_sizes=(0, 0, 0),
        batch=3,
    ),
}

# Target models for timm-exact resized loads: the source fixture's config with these overrides;
# pretrained_window_sizes: the source's per-stage windows (after clamping), as timm's
# swinv2_*_window12to16_192to256 models are built.
RESIZED = {
    # 32 / window 4 -> 64 / window 8: maps 32, 16, 8; windows 8 (shifted), 8 (shifted), 8.
    "swinv2_32_to64": dict(
        source="swinv2_32", img_size=64, window_size=8, pretrained_window_sizes=(4, 4, 4), batch=2
    ),
    # Patch 2 -> 4 at 64x64 (the same 16x16 grid and windows): the patch embedding is resampled.
    "swinv2_32_patch4": dict(source="swinv2_32", img_size=64, patch_size=4, batch=2),
    # 64 / window 4 -> 96 / window 6: maps 24, 12, 6, 3; windows 6, 6, 6 (= map), 3 (clamped).
    "swinv2_64_to96": dict(
        source="swinv2_64",
        img_size=96,
        window_size=6,
        pretrained_window_sizes=(4, 4, 4, 2),
        batch=1,
    ),
}

# swinjax presets -> how timm builds the same architecture: a registered model name, or
# constructor arguments (the class, the kwargs). keras_example is left out: timm's Swin has no
# absolute position embedding and no stage without blocks.
_CIFAR = dict(img_size=32, patch_size=2, num_classes=100, window_size=4, mlp_ratio=2.0)
COUNTED = {
    "swin_t": "swin_tiny_patch4_window7_224",
    "swin_s": "swin_small_patch4_window7_224",
    "swin_b": "swin_base_patch4_window7_224",
    "swin_l": "swin_large_patch4_window7_224",
    "swin_cifar_t": ("v1", dict(_CIFAR, embed_dim=96, depths=(2, 6, 4), num_heads=(3, 6, 12))),
    "swin_cifar_s": ("v1", dict(_CIFAR, embed_dim=128, depths=(2, 6, 4), num_heads=(4, 8, 16))),
    "tiny_test": (
        "v1",
        dict(
            img_size=16,
            patch_size=2,
            num_classes=10,
            embed_dim=16,
            depths=(2, 2),
            num_heads=(2, 4),
            window_size=4,
            mlp_ratio=2.0,
        ),
    ),
    "swinv2_cifar_t": ("v2", dict(_CIFAR, embed_dim=96, depths=(2, 6, 4), num_heads=(3, 6, 12))),
    **{
        name: name
        for name in (
            "swinv2_tiny_window8_256",
            "swinv2_tiny_window16_256",
            "swinv2_small_window8_256",
            "swinv2_small_window16_256",
            "swinv2_base_window8_256",
            "swinv2_base_window16_256",
            "swinv2_base_window12_192",
            "swinv2_base_window12to16_192to256",
            "swinv2_base_window12to24_192to384",
            "swinv2_large_window12_192",
            "swinv2_large_window12to16_192to256",
            "swinv2_large_window12to24_192to384",
        )
    },
}
# timm's default classes per registered model (its pretrained tag's): the 22k-only ones.
CLASSES_22K = {"swinv2_base_window12_192": 21841, "swinv2_large_window12_192": 21841}

LOG_CLAMP = math.log(100.0)  # timm clamps logit_scale at log(1 / 0.01)


def randomize_v2_(model: SwinTransformerV2, gen: torch.Generator) -> None:
    """Every weight drawn at O(1) activation scale, as make_golden.py's ``randomize_``; the
    attention scale and the position-bias MLP in ranges that exercise their clamp and sigmoid.

    The scales exp(logit_scale) are drawn in [5, 20], except the first head of the last block,
    above the clamp (150 -> 100): attention that sharp in every block makes the float32 result
    itself uncertain beyond the tests' 1e-4 (timm's float32 against its float64), after it
    only the final norm and the head follow."""
    depths = [len(stage.blocks) for stage in model.layers]
    last = f"layers.{len(depths) - 1}.blocks.{depths[-1] - 1}.attn.logit_scale"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                p.copy_(math.log(5.0) + torch.rand(p.shape, generator=gen) * math.log(4.0))
                if name == last:
                    p[0] = math.log(150.0)
            elif name.endswith("cpb_mlp.2.weight"):  # the sigmoid's input: std about 1
                p.copy_(torch.randn(p.shape, generator=gen) * 1.5 / p.shape[1] ** 0.5)
            elif p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)


def official_layout(model: SwinTransformerV2) -> dict[str, np.ndarray]:
    """The state dict as microsoft/Swin-Transformer's V2 code saves it (under "model"): merging
    at the end of the stage, ``head.weight``, its persistent buffers."""
    out = {}
    for k, v in model.state_dict().items():
        k = re.sub(
            r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k
        )
        out[k.replace("head.fc.", "head.")] = v.numpy()
    buffers = ("relative_coords_table", "relative_position_index", "attn_mask")
    for name, buf in model.named_buffers():
        if buf is not None and name.endswith(buffers):
            out[name] = buf.numpy()
    return out


def official_arrays(
    official: dict[str, np.ndarray], timm_sd: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The official layout, stored small: ``official_names`` (official key, timm key) for the
    tensors that are timm's under another name (the same arrays), ``official/<key>`` for the
    buffers only the official layout has. The tests rebuild the state dict from both."""
    renamed = {k: v for k, v in official.items() if k not in _buffer_keys(official)}
    names, arrays = [], {}
    for k, v in renamed.items():
        timm_key = _renamed(k, timm_sd)
        np.testing.assert_array_equal(v, timm_sd[timm_key])
        names.append((k, timm_key))
    for k in _buffer_keys(official):
        arrays[f"official/{k}"] = official[k]
    arrays["official_names"] = np.array(names, dtype=np.str_)
    return arrays


def _buffer_keys(official: dict[str, np.ndarray]) -> list[str]:
    buffers = ("relative_coords_table", "relative_position_index", "attn_mask")
    return [k for k in official if k.endswith(buffers)]


def _renamed(official_key: str, timm_sd: dict[str, np.ndarray]) -> str:
    """The timm key of an official one (merging at the start of the next stage, head.fc)."""
    k = re.sub(
        r"layers\.(\d+)\.downsample",
        lambda m: f"layers.{int(m.group(1)) + 1}.downsample",
        official_key,
    )
    k = re.sub(r"^head\.(weight|bias)$", r"head.fc.\1", k)
    assert k in timm_sd, (official_key, k)
    return k


def build(cfg: dict) -> SwinTransformerV2:
    return SwinTransformerV2(**cfg, drop_path_rate=0.0).eval()


def check_official(official: dict[str, np.ndarray], model: SwinTransformerV2) -> dict:
    """timm's filter maps the official layout back onto ``model``'s state dict, tensor for tensor
    (returned, as torch tensors)."""
    back = checkpoint_filter_fn(
        {"model": {k: torch.from_numpy(v) for k, v in official.items()}}, model
    )
    timm_sd = model.state_dict()
    assert set(back) == set(timm_sd), set(back) ^ set(timm_sd)
    for k, v in back.items():
        torch.testing.assert_close(v, timm_sd[k], rtol=0, atol=0)
    return back


def float32_noise(model: SwinTransformerV2, x_NCHW: torch.Tensor) -> dict[str, float]:
    """How far timm's float32 logits and stage maps are from its float64 ones: the uncertainty
    of the float32 result itself, to be well under the tests' tolerance."""
    with torch.no_grad():
        f32 = [model(x_NCHW), *model.forward_intermediates(x_NCHW, norm=True)[1]]
        f64 = model.double()
        exact = [f64(x_NCHW.double()), *f64.forward_intermediates(x_NCHW.double(), norm=True)[1]]
        model.float()
    gaps = [float((a.double() - b).abs().max()) for a, b in zip(f32, exact, strict=True)]
    return {"logits": gaps[0], "stage_maps": max(gaps[1:])}


def cpb_input_std(model: SwinTransformerV2) -> float:
    """The spread of the position-bias MLP's output (the sigmoid's input) over all blocks."""
    with torch.no_grad():
        outs = [
            m.cpb_mlp(m.relative_coords_table).flatten()
            for m in model.modules()
            if hasattr(m, "cpb_mlp")
        ]
    return float(torch.cat(outs).std())


def write_fixtures(out: Path) -> dict[str, SwinTransformerV2]:
    """The plain parity fixtures; returns the timm models, for the resized loads."""
    models = {}
    torch.manual_seed(0)
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        cfg = dict(cfg)
        batch = cfg.pop("batch")
        model = build(cfg)
        gen = torch.Generator().manual_seed(1000 + i)
        randomize_v2_(model, gen)
        u8 = torch.randint(0, 256, (batch, cfg["img_size"], cfg["img_size"], 3), generator=gen)
        u8 = u8.to(torch.uint8).numpy()
        x_NCHW = torch.from_numpy(u8_to_input(u8)).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            logits = model(x_NCHW).numpy()
        timm_sd = {k: v.numpy() for k, v in model.state_dict().items()}
        official = official_layout(model)
        check_official(official, model)

        arrays = {"input_NHWC_u8": u8, "logits": logits}
        arrays.update({f"timm/{k}": v for k, v in timm_sd.items()})
        arrays.update(official_arrays(official, timm_sd))
        np.savez_compressed(out / f"{name}.npz", **arrays)
        scales = np.concatenate([v.ravel() for k, v in timm_sd.items() if "logit_scale" in k])
        noise = float32_noise(model, x_NCHW)
        assert max(noise.values()) < 5e-5, noise
        write_meta(out / f"{name}.json", dict(cfg, batch=batch, float32_noise=noise))
        models[name] = model
        print(
            f"{name}: {len(timm_sd)} tensors, logits {logits.shape}, |logits| max "
            f"{np.abs(logits).max():.3f}, {(scales > LOG_CLAMP).sum()}/{scales.size} logit "
            f"scales clamped, cpb std {cpb_input_std(model):.2f}, float32 noise {noise}"
        )
    return models


def write_resized(out: Path, models: dict[str, SwinTransformerV2]) -> None:
    """Each RESIZED case: its source loaded into the target by timm's V2 filter + strict load."""
    for i, (name, spec) in enumerate(RESIZED.items()):
        spec = dict(spec)
        source, batch = spec.pop("source"), spec.pop("batch")
        cfg = {k: v for k, v in CONFIGS[source].items() if k != "batch"} | spec
        target = build(cfg)
        src_sd = models[source].state_dict()
        sd = checkpoint_filter_fn(dict(src_sd), target)
        target.load_state_dict(sd, strict=True)
        # The official layout (under "model", buffers included) must give the same.
        official = {k: torch.from_numpy(v) for k, v in official_layout(models[source]).items()}
        back = checkpoint_filter_fn({"model": official}, target)
        assert set(back) == set(sd), set(back) ^ set(sd)
        for k, v in back.items():
            torch.testing.assert_close(v, sd[k], rtol=0, atol=0)

        gen = torch.Generator().manual_seed(2000 + i)
        u8 = torch.randint(0, 256, (batch, cfg["img_size"], cfg["img_size"], 3), generator=gen)
        u8 = u8.to(torch.uint8).numpy()
        x_NCHW = torch.from_numpy(u8_to_input(u8)).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            logits = target(x_NCHW).numpy()
        changed = [
            k for k in sd if sd[k].shape != src_sd[k].shape or not torch.equal(sd[k], src_sd[k])
        ]
        arrays = {"input_NHWC_u8": u8, "logits": logits}
        arrays.update({f"adapted/{k}": sd[k].numpy() for k in changed})
        np.savez_compressed(out / f"{name}.npz", **arrays)
        write_meta(out / f"{name}.json", dict(cfg, source=source, batch=batch, changed=changed))
        print(f"{name}: {len(changed)} tensors adapted, |logits| max {np.abs(logits).max():.3f}")


def write_features(out: Path, models: dict[str, SwinTransformerV2]) -> None:
    """timm's forward_features and stage maps (NHWC) of each plain fixture's first image."""
    for name, model in models.items():
        with np.load(out / f"{name}.npz") as npz:
            x_NHWC = u8_to_input(npz["input_NHWC_u8"][:1])
        x_NCHW = torch.from_numpy(x_NHWC).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            features, maps = model.forward_intermediates(x_NCHW, indices=None, norm=True)
            plain = model.forward_intermediates(x_NCHW, indices=1, intermediates_only=True)
            assert torch.equal(features, model.forward_features(x_NCHW))
        to_nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous().numpy()
        arrays = {"features_NHWC": features.numpy()}  # the input: the fixture's first image
        arrays.update({f"stage{i}_NHWC": to_nhwc(m) for i, m in enumerate(maps)})
        arrays["last_no_norm_NHWC"] = to_nhwc(plain[0])
        np.savez_compressed(out / f"{name}_features.npz", **arrays)
        shapes = {k: v.shape for k, v in arrays.items()}
        write_meta(out / f"{name}_features.json", {"source": name, "norm": True, "shapes": shapes})
        print(f"{name}_features: {shapes}")


def timm_model(spec: str | tuple[str, dict]) -> tuple[torch.nn.Module, int]:
    """(the timm model on the meta device, its image size)."""
    with torch.device("meta"):
        if isinstance(spec, str):
            model = timm.create_model(spec, num_classes=CLASSES_22K.get(spec, 1000))
        else:
            family, kwargs = spec
            model = (SwinTransformer if family == "v1" else SwinTransformerV2)(**kwargs)
    return model.eval(), model.patch_embed.img_size[0]


def write_counts(out: Path) -> None:
    """timm's parameters and forward FLOPs per image of every preset in COUNTED."""
    counts = {}
    for preset, spec in COUNTED.items():
        model, img = timm_model(spec)
        x = torch.empty((1, 3, img, img), device="meta")
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        by_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
        counts[preset] = dict(
            timm=spec if isinstance(spec, str) else {"class": spec[0], **spec[1]},
            img_size=img,
            num_classes=model.num_classes,
            params=sum(p.numel() for p in model.parameters()),
            flops=int(counter.get_total_flops()),
            flops_by_op=by_op,
        )
        print(f"{preset}: {counts[preset]['params']:,} params, {counts[preset]['flops']:,} FLOPs")
    meta = {
        "rule": "torch.utils.flop_counter.FlopCounterMode, batch 1, meta device: matrix "
        "products and convolutions at 2 x M x N x K, nothing else",
        "presets": counts,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
    }
    (out / "timm_counts.json").write_text(json.dumps(meta, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="tests/golden")
    parser.add_argument("--only", choices=("fixtures", "counts"), default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only != "counts":
        models = write_fixtures(out)
        write_resized(out, models)
        write_features(out, models)
    if args.only != "fixtures":
        write_counts(out)


if __name__ == "__main__":
    main()
