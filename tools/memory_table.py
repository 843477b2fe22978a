"""Which settings fit: the memory arithmetic of ``swinjax.training.memory`` as a markdown table.

python tools/memory_table.py --devices 8
python tools/memory_table.py --calibrate

The table: one row per model x image size x compute dtype x sharding x remat; columns the train
state per device (parameters and AdamW's moments; with bfloat16 the first moment in bfloat16,
``adam_mu_dtype``), the activations per image, and per device size the largest microbatch per
device that fits with ``--headroom`` of the memory left free, with the ``grad_accum_steps`` a
global batch of 1024 (pre-training at 224) or 512 (fine-tuning at 384) then needs on
``--devices`` devices. Predicted, nothing compiled.

``--calibrate`` compares the predicted activations per image of a few small configs (reference
kernels, float32) with what JAX saves for the backward pass and with XLA's temporary bytes of the
compiled gradient on JAX's default backend (``swinjax.training.memory_calibration``), one JSON
line per config.
"""

from __future__ import annotations

if __name__ == "__main__":  # the programs' XLA flag, before JAX is imported (swinjax.runtime)
    from swinjax import runtime

    runtime.configure(restart=False)

import argparse
import json

from swinjax.models import SwinTransformer
from swinjax.training import memory, memory_calibration

MODELS = ("swin_t", "swin_b", "swin_l")
SIZES = (224, 384)
GLOBAL_BATCH = {224: 1024, 384: 512}
DEVICE_GIB = (16, 24, 40, 80)
# (preset, image size, images per batch): compiled by --calibrate.
CALIBRATION = (
    ("tiny_test", 16, 8),
    ("swin_cifar_t", 32, 4),
    ("swin_t", 224, 2),
)


def table(devices: int, headroom: float) -> str:
    """The markdown table of every model x size x dtype x sharding x remat (module docstring)."""
    head = "| model | image | dtype | sharding | remat | state GiB | act. GiB/image |"
    lines = [
        head + "".join(f" {g} GiB |" for g in DEVICE_GIB),
        "|" + "---|" * (7 + len(DEVICE_GIB)),
    ]
    for name in MODELS:
        for size in SIZES:
            for dtype in ("float32", "bfloat16"):
                for mode in ("replicated", "fsdp"):
                    for remat in ("none", "full"):
                        model = memory.model_at(name, size, dtype=dtype, remat=remat)
                        lines.append(_row(model, name, dtype, mode, devices, headroom))
    return "\n".join(lines)


def _row(
    model: SwinTransformer, name: str, dtype: str, mode: str, devices: int, headroom: float
) -> str:
    """One row: ``model`` (built at its image size, ``dtype`` and remat) under ``mode``."""
    size = model.img_size
    state = memory.state_bytes(
        model, sharding=mode, devices=devices, adam_mu_dtype=dtype, grad_accum_steps=2
    )
    per_image = memory.activation_bytes(model).total
    cells = []
    for gib in DEVICE_GIB:
        m = memory.largest_microbatch(
            model, device_bytes=gib * memory.GIB, headroom=headroom, state=state
        )
        k = memory.accum_steps_needed(GLOBAL_BATCH[size], devices, m)
        cells.append(f"{m} (k={k})" if k else f"{m} (-)")
    return (
        f"| {name} | {size} | {dtype} | {mode} x{devices} | {model.remat} | "
        f"{state.state / memory.GIB:.2f} | {per_image / memory.GIB:.3f} | "
        + " | ".join(cells)
        + " |"
    )


def calibrate() -> None:
    """One JSON line per config of :data:`CALIBRATION` and remat: the predicted bytes per image
    against JAX's saved residuals (every remat) and XLA's temporary bytes (remat none and
    full; compiled twice, at the batch and half of it), in MiB."""
    for name, size, batch in CALIBRATION:
        for remat in ("none", "blocks", "full"):
            model = memory.model_at(name, size, kernels="reference", remat=remat)
            predicted = memory.activation_bytes(model)
            saved = memory_calibration.saved_bytes_per_image(model, batch)
            row = dict(model=name, image=size, batch=batch, remat=remat)
            row.update(saved_mib=_mib(predicted.saved), jax_saved_mib=_mib(saved))
            row.update(saved_over_jax=round(predicted.saved / saved, 3))
            if remat != "blocks":
                temp = memory_calibration.temp_bytes_per_image(model, batch)
                row.update(total_mib=_mib(predicted.total), xla_temp_mib=_mib(temp or 0))
                row.update(total_over_xla=round(predicted.total / temp, 3) if temp else None)
            print(json.dumps(row), flush=True)


def _mib(n: float) -> float:
    return round(n / 2**20, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8, help="devices of the data mesh")
    parser.add_argument(
        "--headroom", type=float, default=memory.DEFAULT_HEADROOM, help="fraction left free"
    )
    parser.add_argument("--calibrate", action="store_true", help="compile and compare instead")
    args = parser.parse_args()
    if args.calibrate:
        calibrate()
    else:
        print(table(args.devices, args.headroom))


if __name__ == "__main__":
    main()
