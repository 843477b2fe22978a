"""The short-budget sweep behind experiments/cifar_strong.py: the peak learning rate and the
convolutional stem's depth, 2 epochs each on CIFAR-10 (the 10-epoch schedule's shape,
compressed), ranked by validation top-1. It ran on the patch-2 variant of the recipe (the
stem's widths below, 16x16 tokens of width 48, depths 2-4, heads 2-4); the learning rate made no
difference and the deeper stem won, which led to the architecture screen (docs/results.md) and
the patch-4 model now in cifar_strong.py. To re-run it as it ran:

    python -m swinjax.sweep --config experiments/cifar_strong_sweep.py \
        --workdir workdirs/cifar_strong_sweep2 --config.data_dir=../shared/datasets/tfds

(``../shared/datasets/tfds`` is the development machine's CIFAR-10 copy, train split only.)
"""

from swinjax.sweeps.space import default_sweep_config


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
    config.num_epochs = 2
    config.warmup_epochs = 0.2
    # The patch-2 model the sweep ran on (cifar_strong.py has moved on to patch 4).
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
