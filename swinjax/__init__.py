"""swinjax: Swin Transformer image classification in JAX/Flax."""

from swinjax import runtime

runtime.apply_xla_flags()

__version__ = "0.1.0"
