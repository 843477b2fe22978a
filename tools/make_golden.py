"""Writes the timm parity fixtures under tests/golden/ (run by `make golden`; needs torch + timm).

For each configuration: a random-weight timm ``SwinTransformer`` (weights re-drawn at O(1) scale,
so a wrong transpose or channel order changes the logits by far more than the tolerance), its
state dict in timm's layout and in the official microsoft/Swin-Transformer layout (downsample at
the end of a stage, ``head.weight``, buffers present), a random NHWC input and timm's float32
logits. The official layout is checked here against timm's own ``checkpoint_filter_fn``.

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="tests/golden")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
        meta = dict(
            cfg, batch=batch, timm_version=timm.__version__, torch_version=torch.__version__
        )
        (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(
            f"{name}: {len(timm_sd)} tensors, logits {logits.shape}, "
            f"|logits| max {np.abs(logits).max():.3f}"
        )


if __name__ == "__main__":
    main()
