"""The seed recipe exactly: the Keras example "Image classification with Swin Transformers".

Model preset ``keras_example`` (162,996 parameters), CIFAR-100 with 10% of train held out for
validation, 40 epochs at batch 128, AdamW 1e-3 with weight decay 1e-4 on every variable and
Keras' epsilon, label smoothing 0.1, constant learning rate, random horizontal flips only (the
seed's full-size RandomCrop does nothing).

    python -m swinjax.train --config experiments/keras_example.py --workdir workdirs/keras_example
"""

from swinjax.config import base_config


def get_config():
    config = base_config()
    config.model = "keras_example"
    config.dataset = "cifar100"
    config.num_epochs = 40
    config.batch_size = 128
    config.learning_rate = 1e-3
    config.weight_decay = 1e-4
    config.decay_all = True  # Keras' AdamW decays every trainable variable
    config.adam_eps = 1e-7  # Keras' default epsilon
    config.adam_eps_keras = True  # added to the uncorrected sqrt(v), as Keras does
    config.label_smoothing = 0.1
    config.schedule = "constant"
    config.augment = "seed_exact"
    return config
