"""Writes the timm parity fixtures under tests/golden/ (run by `make golden`; needs torch + timm).

For each configuration: a random-weight timm ``SwinTransformer`` (weights re-drawn at O(1) scale,
so a wrong transpose or channel order changes the logits by far more than the tolerance), its
state dict in timm's layout and in the official microsoft/Swin-Transformer layout (downsample at
the end of a stage, ``head.weight``, buffers present), a random NHWC input and timm's float32
logits. The official layout is checked here against timm's own ``checkpoint_filter_fn``.

Resized loads (RESIZED): a source fixture's model loaded into a timm model of another image,
window or patch size by timm's ``checkpoint_filter_fn`` and a strict ``load_state_dict``. Stored:
the target config (the weights are the source fixture's), a uint8 image batch (the float input is
``u8 / 127.5 - 1`` in float32: ``u8_to_input``), timm's logits and the tensors that timm's filter
changed (``adapted/<key>``). timm's Swin has no absolute position embedding, so ``resample.npz``
holds timm's ``resample_abs_pos_embed`` (and more ``resample_patch_embed`` and
``resize_rel_pos_bias_table`` cases) applied to random tensors directly.

Features (``<case>_features.npz``): for the first image of each plain fixture's input, timm's
``forward_features`` and ``forward_intermediates(indices=None, norm=True)`` stage maps, stored
NHWC (timm returns NCHW maps: transposed here), and the last stage's map without the final norm.

The transformers layout (``hf_*``) is written by tools/make_golden_hf.py.

    .venv-timm/bin/python tools/make_golden.py --out tests/golden
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import timm
import torch
from timm.layers import resample_abs_pos_embed, resample_patch_embed, resize_rel_pos_bias_table
from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn

CONFIGS = {
    # Four stages at 224 with patch 4 and window 7 (swin_t's structure, reduced widths): the
    # last stage's 7x7 map equals the window, so it runs unshifted (timm's clamp rule).
    "swin224": dict(
        img_size=224,
        patch_size=4,
        window_size=7,
        embed_dim=8,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        mlp_ratio=4.0,
        num_classes=10,
        batch=2,
    ),
    # 32x32 images, patch 2, window 4: shifted windows in stages 0 (16x16) and 1 (8x8).
    "swin32": dict(
        img_size=32,
        patch_size=2,
        window_size=4,
        embed_dim=24,
        depths=(2, 2, 2),
        num_heads=(2, 4, 8),
        mlp_ratio=2.0,
        num_classes=10,
        batch=3,
    ),
}

# Target models for timm-exact resized loads: the source fixture's config with these overrides.
RESIZED = {
    # 224 / window 7 -> 256 / window 8: tables 13x13 -> 15x15 (stages 64, 32, 16, 8).
    "swin224_to256": dict(source="swin224", img_size=256, window_size=8, batch=1),
    # 32 / window 4 -> 64 / window 8: tables 7x7 -> 15x15, shifted windows in stages 0 and 1.
    "swin32_to64": dict(source="swin32", img_size=64, window_size=8, batch=2),
    # Patch 2 -> 4 at 64x64 (the same 16x16 grid): only the patch embedding is resampled.
    "swin32_patch4": dict(source="swin32", img_size=64, patch_size=4, batch=2),
    # 32 / window 4 -> 24 / window 3: tables shrink 7x7 -> 5x5 (timm's q stays near 1.01).
    "swin32_to24": dict(source="swin32", img_size=24, window_size=3, batch=2),
}


def u8_to_input(u8_NHWC: np.ndarray) -> np.ndarray:
    """The float32 input of a uint8 image batch, in [-1, 1] (the tests compute it the same way)."""
    return u8_NHWC.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def randomize_(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Every weight drawn at O(1) activation scale (timm's init leaves LN and biases trivial)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)


def official_layout(model: SwinTransformer) -> dict[str, np.ndarray]:
    """The state dict as microsoft/Swin-Transformer saves it (under "model")."""
    out = {}
    for k, v in model.state_dict().items():
        k = re.sub(
            r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k
        )
        out[k.replace("head.fc.", "head.")] = v.numpy()
    for name, buf in model.named_buffers():  # the official checkpoints carry these buffers
        if buf is not None and name.endswith(("relative_position_index", "attn_mask")):
            out[name] = buf.numpy()
    return out


def write_fixtures(out: Path) -> dict[str, SwinTransformer]:
    """The plain parity fixtures; returns the timm models, for the resized loads."""
    models = {}
    torch.manual_seed(0)
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        cfg = dict(cfg)
        batch = cfg.pop("batch")
        model = SwinTransformer(**cfg, drop_path_rate=0.0).eval()
        gen = torch.Generator().manual_seed(1000 + i)
        randomize_(model, gen)
        x_NCHW = torch.rand((batch, 3, cfg["img_size"], cfg["img_size"]), generator=gen) * 2 - 1
        with torch.no_grad():
            logits = model(x_NCHW).numpy()

        timm_sd = {k: v.numpy() for k, v in model.state_dict().items()}
        official = official_layout(model)
        # timm's own filter must map the official layout back onto exactly this model.
        back = checkpoint_filter_fn(
            {"model": {k: torch.from_numpy(v) for k, v in official.items()}}, model
        )
        assert set(back) == set(timm_sd), set(back) ^ set(timm_sd)
        for k, v in back.items():
            np.testing.assert_array_equal(v.numpy(), timm_sd[k])

        arrays = {"input_NHWC": x_NCHW.permute(0, 2, 3, 1).contiguous().numpy(), "logits": logits}
        arrays.update({f"timm/{k}": v for k, v in timm_sd.items()})
        arrays.update({f"official/{k}": v for k, v in official.items()})
        np.savez_compressed(out / f"{name}.npz", **arrays)
        write_meta(out / f"{name}.json", dict(cfg, batch=batch))
        models[name] = model
        print(
            f"{name}: {len(timm_sd)} tensors, logits {logits.shape}, "
            f"|logits| max {np.abs(logits).max():.3f}"
        )
    return models


def write_meta(path: Path, meta: dict) -> None:
    meta = dict(meta, timm_version=timm.__version__, torch_version=torch.__version__)
    path.write_text(json.dumps(meta, indent=1) + "\n")


def write_resized(out: Path, models: dict[str, SwinTransformer]) -> None:
    """Each RESIZED case: its source loaded into the target by timm's filter + strict load."""
    for i, (name, spec) in enumerate(RESIZED.items()):
        spec = dict(spec)
        source, batch = spec.pop("source"), spec.pop("batch")
        cfg = {k: v for k, v in CONFIGS[source].items() if k != "batch"} | spec
        target = SwinTransformer(**cfg, drop_path_rate=0.0).eval()
        src_sd = models[source].state_dict()
        sd = checkpoint_filter_fn(dict(src_sd), target)
        target.load_state_dict(sd, strict=True)
        # The official layout (under "model", merging at the stage's end) must give the same.
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


def write_resample(out: Path) -> None:
    """timm's low-level resampling functions on random tensors (cases timm's Swin filter lacks)."""
    gen = torch.Generator().manual_seed(3000)
    arrays: dict[str, np.ndarray] = {}
    pos = torch.randn(1, 16 * 16, 24, generator=gen)  # the swin32 fixture's grid and width
    arrays["ape/source"] = pos.numpy()
    for hw in ((32, 32), (8, 8), (12, 20)):
        new = resample_abs_pos_embed(pos, list(hw), num_prefix_tokens=0)
        arrays[f"ape/{hw[0]}x{hw[1]}"] = new.numpy()
    kernel = torch.randn(8, 3, 4, 4, generator=gen)
    arrays["patch/source"] = kernel.numpy()
    for hw in ((2, 2), (3, 5), (8, 8)):
        arrays[f"patch/{hw[0]}x{hw[1]}"] = resample_patch_embed(kernel, list(hw)).numpy()
    table = torch.randn(13 * 13 + 3, 2, generator=gen)  # window 7 and 3 extra (class) tokens
    arrays["rel/source"] = table.numpy()
    for win in ((4, 8), (12, 12), (5, 5)):
        shape = ((2 * win[0] - 1) * (2 * win[1] - 1) + 3, 2)
        new = resize_rel_pos_bias_table(table, new_window_size=win, new_bias_shape=shape)
        arrays[f"rel/{win[0]}x{win[1]}"] = new.numpy()
    np.savez_compressed(out / "resample.npz", **arrays)
    write_meta(out / "resample.json", {"cases": sorted(arrays)})
    print(f"resample: {len(arrays)} arrays")


def write_features(out: Path, models: dict[str, SwinTransformer]) -> None:
    """timm's forward_features and stage maps (NHWC) of each plain fixture's first image."""
    for name, model in models.items():
        with np.load(out / f"{name}.npz") as npz:
            x_NHWC = npz["input_NHWC"][:1]
        x_NCHW = torch.from_numpy(x_NHWC).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            features, maps = model.forward_intermediates(x_NCHW, indices=None, norm=True)
            plain = model.forward_intermediates(x_NCHW, indices=1, intermediates_only=True)
            assert torch.equal(features, model.forward_features(x_NCHW))
        to_nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous().numpy()
        arrays = {"features_NHWC": features.numpy()}  # the input: the fixture's input_NHWC[:1]
        arrays.update({f"stage{i}_NHWC": to_nhwc(m) for i, m in enumerate(maps)})
        arrays["last_no_norm_NHWC"] = to_nhwc(plain[0])
        np.savez_compressed(out / f"{name}_features.npz", **arrays)
        shapes = {k: v.shape for k, v in arrays.items()}
        write_meta(out / f"{name}_features.json", {"source": name, "norm": True, "shapes": shapes})
        print(f"{name}_features: {shapes}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="tests/golden")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = write_fixtures(out)
    write_resized(out, models)
    write_resample(out)
    write_features(out, models)


if __name__ == "__main__":
    main()
