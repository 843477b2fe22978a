"""Fine-tune timm's ImageNet-1k Swin V2-T (window 8) on CIFAR-100 at 256x256: a GPU recipe (not
run here).

    python -m swinjax.train --config experiments/finetune_swinv2_t_cifar100.py \
        --workdir workdirs/finetune_swinv2_t_cifar100
    python -m swinjax.train --config experiments/finetune_swinv2_t_cifar100.py:window8to16 \
        --workdir workdirs/finetune_swinv2_t_cifar100_window8to16

The weights are timm's ``swinv2_tiny_window8_256.ms_in1k`` from the Hugging Face Hub
(``pip install 'swinjax[hub]'``; or download ``model.safetensors`` elsewhere and pass its path as
``--config.init_from=PATH``), loaded into a 100-class Swin V2-T: the classifier is re-initialised,
everything else loads as it is (V2 has no position-bias table to resize: the coordinates of its
position-bias MLP are computed for the model's windows). CIFAR's 32x32 images are augmented at
32x32 (random crop after 4 pixels of padding, flip) and resized on the device to 256x256
(bicubic), then standardised with ImageNet's mean and std, as the weights expect.

The variant ``window8to16`` fine-tunes the same window-8 weights with 16x16 windows (the last
stage's 8x8 map keeps 8), ``pretrained_window_sizes`` (8, 8, 8, 8): the coordinates are scaled
by the window the weights were trained with, so the position-bias MLP sees the range it learned
and extrapolates to the larger offsets, as the Swin V2 paper (Liu et al., 2022, "Swin
Transformer V2: Scaling Up Capacity and Resolution", section 3.3, log-spaced continuous position
bias) transfers windows and as timm's ``swinv2_base_window12to16_192to256`` models were made.

Sources of the settings: the official repository's V2 fine-tuning configs
(microsoft/Swin-Transformer, ``configs/swinv2/swinv2_base_patch4_window12to16_192to256_22kto1k_ft
.yaml`` and its defaults in ``config.py``: AdamW, cosine decay after a linear warmup to a minimum
of 1/100 of the peak, drop path 0.2, weight decay 1e-8, gradient clipping at 5, label smoothing
0.1, ``PRETRAINED_WINDOW_SIZES`` for a larger window) and timm's V2 model definitions
(``swin_transformer_v2.py``: the ``window12to16`` models' ``pretrained_window_sizes``; timm
trains with its generic ``train.py``, no V2-specific recipe). Those configs fine-tune ImageNet-22k
weights on ImageNet-1k for 30 epochs; a transfer to a new 100-class head on CIFAR-100 takes the
short schedule, the larger learning rate and the layer-wise decay of
``experiments/finetune_swin_t_cifar100.py`` (BEiT's protocol, as timm's ``--layer-decay``).
"""

from swinjax.config import base_config
from swinjax.errors import ConfigError


def get_config(variant: str = ""):
    """``variant``: '' window 8 as pretrained, 'window8to16' the same weights at window 16."""
    if variant not in VARIANTS:
        raise ConfigError(
            f"experiments/finetune_swinv2_t_cifar100.py:{variant}: no such variant; use one of "
            f"{list(VARIANTS)}"
        )
    return VARIANTS[variant]()


def _recipe():
    config = base_config()
    config.model = "swinv2_tiny_window8_256"
    config.model_kwargs.num_classes = 100
    config.model_kwargs.img_size = 256
    config.model_kwargs.drop_path_rate = 0.2
    config.init_from = "hf-hub:timm/swinv2_tiny_window8_256.ms_in1k"
    config.init_head = "auto"  # 1000 -> 100 classes: a new head
    config.dataset = "cifar100"
    config.normalize = "imagenet"
    config.resize_method = "bicubic"
    config.augment = "crop_flip"
    config.crop_padding = 4
    config.num_epochs = 10
    config.batch_size = 128
    config.learning_rate = 1e-4
    config.layer_decay = 0.75
    config.weight_decay = 1e-8
    config.label_smoothing = 0.1
    config.schedule = "warmup_cosine"
    config.warmup_epochs = 1.0
    config.min_lr = 1e-6
    config.grad_clip_norm = 5.0
    config.dtype = "bfloat16"
    return config


def _window8to16():
    config = _recipe()
    config.model_kwargs.window_size = 16
    config.model_kwargs.pretrained_window_sizes = (8, 8, 8, 8)
    return config


VARIANTS = {"": _recipe, "window8to16": _window8to16}
