"""swinjax: Swin Transformer image classification in JAX/Flax.

Importing any module of the package changes nothing in the process (no environment variable,
XLA flag or matplotlib backend); the programs opt in to their log levels and speed settings with
:func:`swinjax.runtime.prepare_process`, a notebook with :func:`swinjax.runtime.configure`.

Shape letters in names (``x_BHWC``, ``q_BwNhd``), each with one meaning everywhere:

====  =====================================================================================
B     batch: images in a batch
E     examples in a split (``images_EHWC``, ``labels_E``)
H, W  height and width: in pixels for images, in tokens for feature maps
C     channels (features of a token)
w     windows per image; ``Bw`` is one axis of B * w windows
N     tokens per window; ``NN`` is (query token, key token)
h, d  attention heads, and channels per head
T     rows of the relative position bias table, (2 wh - 1)(2 ww - 1)
K     classes (``logits_BK``)
R     rows of a token-wise linear layer (all tokens flattened); I, O its in/out features
P     members of a population (a leading axis of a stacked train state)
A     attempts of a random-resized crop (``RRC_ATTEMPTS``, :mod:`swinjax.data.preprocess`)
2     a literal pair, e.g. (row, column) offsets
====  =====================================================================================
"""

__version__ = "0.1.0"
