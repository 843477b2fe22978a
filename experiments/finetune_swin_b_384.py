"""Fine-tune timm's ImageNet-1k Swin-B (window 7, 224x224) at 384x384 with window 12: the official
Swin fine-tuning recipe, on CIFAR-100. An accelerator recipe (not run here).

    python -m swinjax.train --config experiments/finetune_swin_b_384.py \
        --workdir workdirs/finetune_swin_b_384
    python -m swinjax.train --config experiments/finetune_swin_b_384.py \
        --workdir workdirs/finetune_swin_b_384 --config.sharding=fsdp   # state split over devices

The recipe is the official repository's
``configs/swin/swin_base_patch4_window12_384_finetune.yaml`` (Liu et al., 2021, "Swin
Transformer: Hierarchical Vision Transformer using Shifted Windows": the 224x224 model fine-tuned
at 384x384 for 30 epochs) over the repository's defaults (``config.py``): Swin-B, window 12,
384x384, 30 epochs, AdamW (betas 0.9, 0.999, epsilon 1e-8) with weight decay 1e-8, base learning
rate 2e-5 for a global batch of 512, 5 warmup epochs then a cosine decay to 2e-7, gradient
clipping at 5.0, drop path 0.5 (the yaml's ``DROP_PATH_RATE``), label smoothing 0.1, RandAugment
(m9, n2), mixup 0.8, CutMix 1.0, random erasing 0.25, no crop margin at evaluation
(``TEST.CROP: False``). Added to it: layer-wise learning-rate decay 0.9 (timm's grouping for
Swin, as timm's ``--layer-decay``) and an EMA of the parameters (0.999: about the last 1000
steps, a third of this run on CIFAR-100; the repository keeps none). Differences: the official
warmup starts at 2e-8, here at 0; its RandAugment draws the magnitude around 9 (``mstd0.5``),
here fixed at 9; its mixup draws one ``lam`` per batch, here one per image; its evaluation
squashes an image to 384x384, here the shorter side goes to 384 and the central square is kept.

Scaling rule: the official one, linear in the global batch (``main.py``: lr = base_lr * batch /
512, where the batch counts accumulated microbatches too): keep ``batch_size=512`` or set
``learning_rate`` and ``min_lr`` to ``2e-5 * batch_size / 512`` and ``2e-7 * batch_size / 512``.

The global batch of 512 is 8 microbatches of 64 (``grad_accum_steps=8``: one update per 512
images, one microbatch's activations in memory at a time), in bfloat16, each Swin block
rematerialised in the backward pass but its linear layers' outputs (``remat=blocks``): the
official repository's ``--accumulation-steps`` and ``--use-checkpoint``, for one accelerator
(the memory this takes has not been measured: no accelerator here). On N devices each
microbatch is split N ways: with 8 devices ``--config.grad_accum_steps=1`` is the official 8-GPU
setting (64 images a device). ``--config.sharding=fsdp`` splits the parameters, AdamW's moments
and the EMA over the devices (docs/multihost.md).

The weights are timm's ``swin_base_patch4_window7_224.ms_in1k`` from the Hugging Face Hub
(``pip install 'swinjax[hub]'``; or download ``model.safetensors`` elsewhere and pass its path as
``--config.init_from=PATH``); ``init_from`` adapts them as timm's ``checkpoint_filter_fn`` does:
the relative position bias tables resized from window 7 to 12, the classifier re-initialised for
100 classes (docs/finetuning.md). Data: CIFAR-100 as in ``finetune_swin_t_cifar100.py``, its
32x32 images augmented at 32x32 (crop after 4 pixels of padding, flip, RandAugment), resized on
the device to 384x384 (bicubic) and standardised with ImageNet's mean and std. The official
recipe fine-tunes on ImageNet-1k: ``--config.dataset=imagenet2012`` (its images streamed,
random-resized-cropped to 384 on the host) with ``--config.model_kwargs.num_classes=1000``,
which keeps the pretrained head.
"""

from swinjax.config import base_config

GLOBAL_BATCH = 512
BASE_LR, BASE_MIN_LR = 2e-5, 2e-7  # the official config's, for a global batch of 512


def get_config():
    config = base_config()
    config.model = "swin_b"
    config.model_kwargs.num_classes = 100
    config.model_kwargs.img_size = 384
    config.model_kwargs.window_size = 12
    config.model_kwargs.drop_path_rate = 0.5
    config.init_from = "hf-hub:timm/swin_base_patch4_window7_224.ms_in1k"
    config.init_head = "auto"  # 1000 -> 100 classes: a new head
    config.dataset = "cifar100"
    config.normalize = "imagenet"
    config.resize_method = "bicubic"
    config.augment = "crop_flip"
    config.crop_padding = 4
    config.eval_crop_fraction = 1.0  # varying sizes: shorter side to 384, no margin cropped
    config.augment_policy = "randaugment"
    config.randaug_num_ops = 2
    config.randaug_magnitude = 9.0
    config.mixup_alpha = 0.8
    config.cutmix_alpha = 1.0
    config.erase_prob = 0.25
    config.num_epochs = 30
    config.batch_size = GLOBAL_BATCH
    config.grad_accum_steps = 8  # 8 microbatches of 64
    config.learning_rate = BASE_LR * config.batch_size / 512
    config.min_lr = BASE_MIN_LR * config.batch_size / 512
    config.schedule = "warmup_cosine"
    config.warmup_epochs = 5.0
    config.weight_decay = 1e-8
    config.grad_clip_norm = 5.0
    config.layer_decay = 0.9
    config.label_smoothing = 0.1
    config.ema_decay = 0.999
    config.dtype = "bfloat16"
    config.remat = "blocks"
    return config
