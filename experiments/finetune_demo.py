"""Fine-tuning, offline, in a few minutes on a CPU: the checkpoint of the one-minute demo run
(``experiments/demo.py``: tiny_test at 16x16, window 4, 10 synthetic classes) continued at
32x32 with window 8 on classes 5-9 only, with a new head.

    python -m swinjax.train --config experiments/demo.py --workdir workdirs/demo
    python -m swinjax.train --config experiments/finetune_demo.py --workdir workdirs/finetune_demo

At start the run prints what it did with the weights: the relative position bias tables resized
from window 4 to 8 (timm's resize), the head re-initialised (10 -> 5 classes), the rest loaded
as it is. The 16x16 synthetic images are resized to 32x32 on the device. The backbone learns at
layer-wise decayed rates (layer_decay 0.75: the head at the full rate, the patch embedding
lowest).
"""

from swinjax.config import base_config


def get_config():
    config = base_config()
    config.model = "tiny_test"
    config.model_kwargs.img_size = 32
    config.model_kwargs.window_size = 8
    config.init_from = "workdirs/demo"
    config.init_head = "reset"
    config.dataset = "synthetic"
    config.classes = "5,6,7,8,9"
    config.train_split = "train[:90%]"
    config.val_split = "train[90%:]"
    config.test_split = "test"
    config.num_epochs = 4
    config.batch_size = 64
    config.learning_rate = 2e-3
    config.layer_decay = 0.75
    config.schedule = "warmup_cosine"
    config.warmup_epochs = 0.5
    config.augment = "crop_flip"
    config.crop_padding = 2
    config.log_every_steps = 5
    return config
