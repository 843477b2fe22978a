"""Device-side augmentation: pure, jittable functions that the train step runs on uint8 batches,
each drawing its randomness from the step's key (so a resumed run augments exactly as an
uninterrupted one). :mod:`.transforms`: random crop and flip, normalisation, resizing to the
model's input; :mod:`.image_ops` and :mod:`.autoaugment`: RandAugment and TrivialAugment, per
image; :mod:`.mixing`: mixup, CutMix and random erasing.

May import: :mod:`swinjax.errors` and jax; nothing else of swinjax.
"""
