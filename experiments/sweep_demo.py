"""A one-minute offline sweep: four learning rates for a tiny Swin on the synthetic dataset.

python -m swinjax.sweep --config experiments/sweep_demo.py --workdir workdirs/sweep_demo
python -m swinjax.sweep --config experiments/sweep_demo.py --workdir workdirs/sweep_demo_pop \
    --config.sweep.execution=population        # the four models in one vmapped step
"""

from swinjax.config import base_config
from swinjax.sweeps.space import default_sweep_config


def get_config():
    config = base_config()
    config.model = "tiny_test"
    config.dataset = "synthetic"
    config.train_split = "train[:90%]"
    config.val_split = "train[90%:]"
    config.test_split = ""  # sweeps select on validation; never on the test split
    config.num_epochs = 4
    config.batch_size = 64
    config.schedule = "warmup_cosine"
    config.warmup_epochs = 1.0
    config.augment = "crop_flip"
    config.crop_padding = 2

    config.sweep = default_sweep_config()
    config.sweep.mode = "grid"
    config.sweep.grid = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}
    config.sweep.execution = "sequential"
    return config
