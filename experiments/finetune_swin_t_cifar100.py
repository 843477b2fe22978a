"""Fine-tune timm's ImageNet-1k Swin-T on CIFAR-100 at 224x224: a GPU recipe (not run here).

    python -m swinjax.train --config experiments/finetune_swin_t_cifar100.py \
        --workdir workdirs/finetune_swin_t_cifar100

The weights are timm's ``swin_tiny_patch4_window7_224.ms_in1k`` from the Hugging Face Hub
(``pip install 'swinjax[hub]'``; or download ``model.safetensors`` elsewhere and pass its path as
``--config.init_from=PATH``), loaded into a 100-class Swin-T: the classifier is re-initialised,
everything else loads as it is. CIFAR's 32x32 images are augmented at 32x32 (random crop after
4 pixels of padding, flip) and resized on the device to 224x224 (bicubic), then standardised with
ImageNet's mean and std, as the weights expect.

The recipe is the usual transfer recipe for ImageNet-pretrained vision transformers, after the
fine-tuning protocol of BEiT (Bao et al., 2022, "BEiT: BERT Pre-Training of Image Transformers",
§3.2 and appendix: AdamW, layer-wise learning-rate decay, linear warmup then cosine decay, label
smoothing 0.1, weight decay 0.05, stochastic depth 0.1) as implemented in timm's fine-tuning
scripts (``--layer-decay``), with the short schedule and small learning rate of a
transfer task (batch 128, peak 1e-4 for the head, 10 epochs). Public model cards report about
87% top-1 on CIFAR-100 for a fine-tuned Swin-T.
"""

from swinjax.config import base_config


def get_config():
    config = base_config()
    config.model = "swin_t"
    config.model_kwargs.num_classes = 100
    config.model_kwargs.img_size = 224
    config.model_kwargs.drop_path_rate = 0.1
    config.init_from = "hf-hub:timm/swin_tiny_patch4_window7_224.ms_in1k"
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
    config.weight_decay = 0.05
    config.label_smoothing = 0.1
    config.schedule = "warmup_cosine"
    config.warmup_epochs = 1.0
    config.min_lr = 1e-6
    config.grad_clip_norm = 5.0
    config.dtype = "bfloat16"
    return config
