"""CIFAR-100 from scratch at the budget a GPU user spends (200 epochs): a small-image Swin with a
convolutional stem and the data-efficient training recipe of the vision-transformer literature.

    python -m swinjax.train --config experiments/cifar100_strong.py --workdir workdirs/c100_strong

Model: ``swin_cifar_t`` (patch 2, window 4, embed 96, depths 2-6-4, heads 3-6-12, MLP ratio 2:
the Swin of Lee et al. 2021, "Vision Transformer for Small-Size Datasets") with a convolutional
stem (Xiao et al. 2021, "Early Convolutions Help Transformers See Better"). Recipe: DeiT's
(Touvron et al. 2021, "Training data-efficient image transformers & distillation through
attention", Table 9): AdamW, weight decay 0.05 off norms/biases/position tables, linear warmup
then cosine, label smoothing 0.1, stochastic depth 0.1, mixup 0.8 / CutMix 1.0 (switch 0.5),
random erasing 0.25, an automatic augmentation policy (TrivialAugment here, Mueller & Hutter
2021, in place of DeiT's RandAugment 9/0.5: no magnitude to tune), and an EMA of the weights;
batch 128 at learning rate 1e-3 (DeiT's 5e-4 x 512 / 512 scaled to the batch with the square
root rule), 200 epochs with 10 of warmup (Lee et al. train 100; Hassani et al. 2021, "Escaping
the Big Data Paradigm with Compact Transformers", 300), test-time augmentation by flips and
1-pixel moves (Jordan 2024, airbench).

Not run here: the development machine is a 2-core CPU without CIFAR-100; at its speed this
recipe would take about 11 days. No result is claimed for it.
"""

from swinjax.config import base_config


def get_config():
    config = base_config()
    config.model = "swin_cifar_t"
    config.model_kwargs.stem = "conv"
    config.model_kwargs.drop_path_rate = 0.1
    config.dataset = "cifar100"
    config.normalize = "dataset"
    config.num_epochs = 200
    config.batch_size = 128
    config.learning_rate = 1e-3
    config.weight_decay = 0.05
    config.label_smoothing = 0.1
    config.schedule = "warmup_cosine"
    config.warmup_epochs = 10.0
    config.min_lr = 1e-5
    config.grad_clip_norm = 5.0
    config.augment = "crop_flip"
    config.crop_padding = 4
    config.augment_policy = "trivialaugment"
    config.mixup_alpha = 0.8
    config.cutmix_alpha = 1.0
    config.mix_switch_prob = 0.5
    config.erase_prob = 0.25
    config.ema_decay = 0.9998
    config.eval_tta = True
    config.eval_tta_shift = 1  # and both moved by 1 pixel (airbench's test-time views)
    return config
