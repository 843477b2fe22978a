"""The short-budget sweep behind experiments/cifar_strong.py: architecture first (convolutional
stem or not, width), 3 epochs each on CIFAR-10, ranked by validation top-1.

    python -m swinjax.sweep --config experiments/cifar_strong_sweep.py \
        --workdir workdirs/cifar_strong_sweep --config.data_dir=../shared/datasets/tfds

(``../shared/datasets/tfds`` is the development machine's CIFAR-10 copy, train split only.)
"""

from swinjax.search import default_sweep_config


def get_config():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "cifar_strong", Path(__file__).with_name("cifar_strong.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.dataset = "cifar10"
    config.test_split = ""
    config.num_epochs = 3
    config.warmup_epochs = 0.5
    config.schedule = "warmup_linear"
    config.min_lr = 0.0
    config.model_kwargs.num_heads = (2, 4)
    config.sweep = default_sweep_config()
    config.sweep.mode = "grid"
    config.sweep.grid = {"model_kwargs": {"stem": ["patch", "conv"], "embed_dim": [48, 64]}}
    config.sweep.execution = "sequential"
    return config
