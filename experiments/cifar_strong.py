"""The budget recipe: a hybrid Swin trained for 10 epochs on a CPU, one epoch at most twice the
seed recipe's (``experiments/keras_example.py``).

    python -m swinjax.train --config experiments/cifar_strong.py --workdir workdirs/cifar_strong \
        --config.dataset=cifar10 --config.num_epochs=10

Model: a convolutional stem (Xiao et al. 2021, "Early convolutions help transformers see
better"; five 3x3 convolutions, a full-resolution one first, stride 2 twice: 32x32 images to 8x8
tokens of width 96), then a Swin stage of four blocks on the 8x8 tokens and, after patch
merging, two blocks on 4x4 tokens of width 192; relative position bias, MLP ratio 2. Its windows
of 8 cover the whole token map at this image size, so attention is global in both stages (Swin
clamps the window to the map and drops the shift, as timm does; the Swin paper's last stage is
the same): at 10 epochs global attention beat windows of 4 by 2.5 points. Recipe for the
budget: AdamW, a linear warmup over the first epoch then a linear decay to zero at the end of
the run (budget-aware schedules: Li et al. 2020, "Budgeted training: rethinking deep neural
network training under resource constraints"), weight decay 0.05 off norms, biases and position
tables, label smoothing 0.1, gradient clipping, flips and random crops of 2 pixels of padding
(as airbench's short runs; 4 pixels cost 2.9 points at 10 epochs) and nothing heavier (at 10
epochs the model underfits: no stochastic depth, no mixing), test-time augmentation by flips
and 1-pixel moves (airbench's: Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU").

Found with the variant ``sweep`` below, the architecture screen and the 10-epoch runs in
docs/results.md. Measured on the development CPU (docs/results.md, 2026-11-29): 79.0%
validation top-1 on CIFAR-10 after 10 epochs, short of the 85% aimed for, at 1.89x the seed
recipe's epoch cost (MLP ratio 3 reached 79.6% but cost 1.94-2.03x, over the 2x bound).

Variant ``sweep`` (``--config experiments/cifar_strong.py:sweep``): the short-budget sweep behind
the recipe: the peak learning rate and the convolutional stem's depth, 2 epochs each on CIFAR-10
(the 10-epoch schedule's shape, compressed), ranked by validation top-1. It ran on the patch-2
model the recipe had then (16x16 tokens of width 48, depths 2-4, heads 2-4, 4 pixels of crop
padding); the learning rate made no difference and the deeper stem won, which led to the
architecture screen and the patch-4 model above. To re-run it as it ran:

    python -m swinjax.sweep --config experiments/cifar_strong.py:sweep \
        --workdir workdirs/cifar_strong_sweep2 --config.data_dir=../shared/datasets/tfds

(``../shared/datasets/tfds`` is the development machine's CIFAR-10 copy, train split only.)
"""

from swinjax.config import base_config
from swinjax.errors import ConfigError
from swinjax.sweeps.space import default_sweep_config


def get_config(variant: str = ""):
    """``variant``: '' the recipe, 'sweep' the sweep that led to it (:data:`VARIANTS`)."""
    if variant not in VARIANTS:
        raise ConfigError(
            f"experiments/cifar_strong.py:{variant}: no such variant; use one of {list(VARIANTS)}"
        )
    return VARIANTS[variant]()


def _recipe():
    config = base_config()
    config.model = "swin_cifar_t"
    config.model_kwargs.patch_size = 4
    config.model_kwargs.stem = "conv"
    config.model_kwargs.stem_channels = (32, 64, 64, 96, 96)
    config.model_kwargs.stem_strides = (1, 2, 1, 2, 1)
    config.model_kwargs.embed_dim = 96
    config.model_kwargs.depths = (4, 2)
    config.model_kwargs.num_heads = (3, 6)
    config.model_kwargs.window_size = 8
    config.model_kwargs.mlp_ratio = 2.0
    config.model_kwargs.drop_path_rate = 0.0
    config.dataset = "cifar100"
    config.normalize = "dataset"
    config.num_epochs = 10
    config.batch_size = 128
    config.learning_rate = 2e-3
    config.weight_decay = 0.05
    config.label_smoothing = 0.1
    config.schedule = "warmup_linear"
    config.warmup_epochs = 1.0
    config.min_lr = 0.0
    config.grad_clip_norm = 1.0
    config.augment = "crop_flip"
    config.crop_padding = 2
    config.eval_tta = True
    config.eval_tta_shift = 1  # and both moved by 1 pixel (airbench's test-time views)
    return config


def _sweep():
    config = _recipe()
    config.dataset = "cifar10"
    config.test_split = ""
    config.num_epochs = 2
    config.warmup_epochs = 0.2
    # The patch-2 model the sweep ran on (the recipe has moved on to patch 4).
    kw = config.model_kwargs
    kw.patch_size, kw.stem_strides, kw.embed_dim = 2, (), 48
    kw.depths, kw.num_heads, kw.drop_path_rate = (2, 4), (2, 4), 0.05
    config.crop_padding = 4
    config.sweep = default_sweep_config()
    config.sweep.mode = "grid"
    config.sweep.grid = {
        "learning_rate": [2e-3, 4e-3],
        "model_kwargs": {"stem_channels": [(24, 48), (32, 48, 48)]},
    }
    config.sweep.execution = "sequential"
    return config


# The configs this file gives: get_config(NAME), on the command line `cifar_strong.py:NAME`.
VARIANTS = {"": _recipe, "sweep": _sweep}
