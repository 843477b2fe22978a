"""Checks a ``--format timm`` export with timm itself: same logits as swinjax within 1e-4.

Two steps, in two virtual environments (swinjax never needs torch):

    # 1. swinjax (.venv): the export's images and swinjax's logits for them
    .venv/bin/python tools/check_timm_export.py reference --ckpt WORKDIR --export DIR
    # 2. timm (.venv-timm, `make golden` installs it): load DIR as the docs say, compare
    .venv-timm/bin/python tools/check_timm_export.py check --export DIR

``reference`` writes ``DIR/reference.npz`` (uint8 images at the model's input size, and the
logits of swinjax's serving function, normalization included). ``check`` builds the model both
ways the docs give (``local-dir:DIR``, and the timm name with ``pretrained_cfg_overlay`` and the
``model_args``), normalizes the images with ``pretrained_cfg``'s mean/std, and prints the largest
absolute difference of the logits; exit status 1 where it exceeds ``--atol``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REFERENCE = "reference.npz"


def reference(ckpt: str, export: Path, batch: int, ema: bool) -> None:
    """Writes ``export/reference.npz``: random uint8 images and swinjax's logits for them."""
    import jax
    import jax.numpy as jnp

    from swinjax.serve.serving import input_shape, serving_function
    from swinjax.training.inference import restore_params

    restored = restore_params(ckpt, ema=ema)
    images = np.random.RandomState(0).randint(0, 256, (batch, *input_shape(restored)), np.uint8)
    serve = jax.jit(serving_function(restored))
    logits = np.asarray(serve(restored.params, jnp.asarray(images))["logits"])
    np.savez(export / REFERENCE, images=images, logits=logits)
    print(f"wrote {export / REFERENCE}: {batch} images, logits {logits.shape}")


def check(export: Path, atol: float) -> int:
    """Loads ``export`` with timm both ways; 0 where both give the reference logits."""
    import timm
    import torch

    ref = np.load(export / REFERENCE)
    config = json.loads((export / "config.json").read_text())
    by_dir = timm.create_model(f"local-dir:{export}", pretrained=True)
    by_name = timm.create_model(
        config["architecture"],
        pretrained=True,
        pretrained_cfg_overlay=dict(
            file=str(export / "model.safetensors"), num_classes=config["num_classes"]
        ),
        num_classes=config["num_classes"],
        **config["model_args"],
    )
    cfg = by_dir.pretrained_cfg
    mean, std = np.float32(cfg["mean"]), np.float32(cfg["std"])
    x_NCHW = ((ref["images"] / np.float32(255) - mean) / std).transpose(0, 3, 1, 2)
    worst = 0.0
    for how, model in (("local-dir", by_dir), ("pretrained_cfg_overlay", by_name)):
        with torch.no_grad():
            logits = model.eval()(torch.from_numpy(np.ascontiguousarray(x_NCHW))).numpy()
        diff = float(np.abs(logits - ref["logits"]).max())
        worst = max(worst, diff)
        print(f"{how}: {config['architecture']} {config['model_args']}: max |diff| {diff:.2e}")
    print(json.dumps({"export": str(export), "max_abs_diff": worst, "atol": atol}))
    return 0 if worst <= atol else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    ref = sub.add_parser("reference", help="swinjax's logits (run in swinjax's environment)")
    ref.add_argument("--ckpt", required=True)
    ref.add_argument("--export", required=True, type=Path)
    ref.add_argument("--batch", type=int, default=4)
    ref.add_argument("--ema", action="store_true")
    chk = sub.add_parser("check", help="timm's logits (run in timm's environment)")
    chk.add_argument("--export", required=True, type=Path)
    chk.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args()
    if args.step == "reference":
        reference(args.ckpt, args.export, args.batch, args.ema)
        return 0
    return check(args.export, args.atol)


if __name__ == "__main__":
    sys.exit(main())
