"""Writes a folder of JPEGs of random sizes for streaming benchmarks: ROOT/train/<class>/*.jpg.

    python tools/make_image_folder.py /tmp/jpegs --images 2000 --classes 10 --sizes 200 500
    python -m swinjax.bench --config experiments/demo.py --config.dataset=imagefolder:/tmp/jpegs \
        --config.model_kwargs.img_size=224 --batch_size 32 --steps 2 --warmup 1 --epoch_steps 5

Each image is noise-textured (JPEG quality 90; about as large as ImageNet's photos), its height
and width drawn uniformly from the size range, with a class colour cast so that it is learnable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs=2, default=(200, 500))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    casts = rng.uniform(60, 200, (args.classes, 3))
    for i in range(args.images):
        label = i % args.classes
        h, w = rng.integers(args.sizes[0], args.sizes[1] + 1, 2)
        pixels = np.clip(casts[label] + rng.normal(0, 50, (h, w, 3)), 0, 255).astype(np.uint8)
        folder = args.root / "train" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


if __name__ == "__main__":
    main()
