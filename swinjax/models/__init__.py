"""The Swin Transformer as Flax linen modules: the model (:mod:`.swin`), the preset table and
``create_model`` (:mod:`.presets`), the patch-embedding stems (:mod:`.stem`), and the building
blocks in :mod:`.layers`. A model knows nothing of data, optimizers or training.

May import: :mod:`swinjax.errors` and the libraries (flax, jax, numpy); nothing else of swinjax.
"""

from swinjax.models.presets import PRESETS, count_params, create_model, param_shapes
from swinjax.models.swin import SwinTransformer

__all__ = ["PRESETS", "SwinTransformer", "count_params", "create_model", "param_shapes"]
