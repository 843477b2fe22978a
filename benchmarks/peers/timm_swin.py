"""timm's PyTorch Swin Transformer (V1 and V2) on the CPU in float32, timed per training step: the
peer of swinjax's ``swin_cifar_t``, ``swin_t``, ``swinv2_cifar_t`` and ``swinv2_tiny_window8_256``
presets.

Cases (random inputs, 100 classes):

- ``cifar_s_32``: the small-image Swin at 32x32 (patch 2, window 4, embed 96, depths 2-6-4, heads
  3-6-12, MLP ratio 2, drop path 0.1), batch 128: the shapes of swinjax's ``swin_cifar_t``.
- ``swin_t_224``: timm's ``swin_tiny_patch4_window7_224`` (random weights), batch 16: swinjax's
  ``swin_t``.
- ``cifar_s_32_v2``: ``cifar_s_32``'s shapes as timm's ``SwinTransformerV2``, batch 128:
  swinjax's ``swinv2_cifar_t``.
- ``swinv2_t_256``: timm's ``swinv2_tiny_window8_256`` (random weights), batch 8: swinjax's
  preset of the same name.

A step is forward, label-smoothed (0.1) cross-entropy, backward and an AdamW update (learning
rate 1e-3, weight decay 0.05), in training mode (dropout and drop path on).

    python benchmarks/peers/timm_swin.py CASE [--steps N] [--warmup N] [--batch N] [--json]

Prints training images/s and the number of threads PyTorch used.
"""

from __future__ import annotations

import argparse

import timm
import torch
from timing import images_per_second, report
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2

CIFAR_S_32 = {
    "img_size": 32,
    "patch_size": 2,
    "window_size": 4,
    "embed_dim": 96,
    "depths": (2, 6, 4),
    "num_heads": (3, 6, 12),
    "mlp_ratio": 2.0,
    "drop_path_rate": 0.1,
    "num_classes": 100,
}
# case: (model factory, image size, default batch)
CASES = {
    "cifar_s_32": (lambda: SwinTransformer(**CIFAR_S_32), 32, 128),
    "swin_t_224": (
        lambda: timm.create_model(
            "swin_tiny_patch4_window7_224", pretrained=False, num_classes=100
        ),
        224,
        16,
    ),
    "cifar_s_32_v2": (lambda: SwinTransformerV2(**CIFAR_S_32), 32, 128),
    "swinv2_t_256": (
        lambda: timm.create_model("swinv2_tiny_window8_256", pretrained=False, num_classes=100),
        256,
        8,
    ),
}


def training_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """A function running one AdamW step of ``model`` on the fixed batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=0, help="0: the case's batch")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of text")
    args = parser.parse_args()
    make, size, batch = CASES[args.case]
    batch = args.batch or batch
    torch.manual_seed(0)
    model = make().train()
    images = torch.rand(batch, 3, size, size)
    labels = torch.randint(0, 100, (batch,))
    step = training_step(model, images, labels)
    record = {
        "peer": f"timm {args.case}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "batch": batch,
        "train": images_per_second(step, batch, args.steps, args.warmup),
    }
    if not args.json:
        print(
            f"timm {args.case}: {record['params']:,} parameters, torch {record['torch']}, "
            f"{record['threads']} threads"
        )
    report(record, args.json)


if __name__ == "__main__":
    main()
