"""swinjax: Swin Transformer image classification in JAX/Flax."""

from swinjax import xla_flags

xla_flags.apply()

__version__ = "0.1.0"
