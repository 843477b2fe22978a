"""A one-minute offline run: a tiny Swin on the built-in synthetic dataset, evaluation included.

python -m swinjax.train --config experiments/demo.py --workdir workdirs/demo
python -m swinjax.eval --ckpt workdirs/demo
"""

from swinjax.config import base_config


def get_config():
    config = base_config()
    config.model = "tiny_test"
    config.dataset = "synthetic"
    config.train_split = "train[:90%]"
    config.val_split = "train[90%:]"
    config.test_split = "test"
    config.num_epochs = 6
    config.batch_size = 64
    config.learning_rate = 2e-3
    config.schedule = "warmup_cosine"
    config.warmup_epochs = 1.0
    config.augment = "crop_flip"
    config.crop_padding = 2
    config.log_every_steps = 5
    return config
