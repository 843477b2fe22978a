"""swinjax: Swin Transformer image classification in JAX/Flax.

Importing any module of the package changes nothing in the process (no environment variable,
XLA flag or matplotlib backend); the programs opt in to their log levels and speed settings with
:func:`swinjax.runtime.prepare_process`, a notebook with :func:`swinjax.runtime.configure`.

Shape letters in names (``x_BHWC``, ``q_BwNhd``): the suffix after the last underscore spells
the array's axes, one letter (or digit) per axis, each with one meaning everywhere
(``tests/test_style.py`` checks that every letter used is listed here):

====  =====================================================================================
B     batch: images in a batch
E     examples in a split (``images_EHWC``, ``labels_E``)
H, W  height and width of a 2-D grid: pixels of an image, tokens of a feature map, taps of a
      convolution kernel (``kernel_OIHW``), offsets of a position-bias table
C     channels: colours of a pixel, features of a token
S     the H * W positions of an image or a feature map flattened into one axis (``flat_BSC``)
w     windows of an image (lowercase: never a width); ``Bw`` is one axis of B * w windows
N     tokens of a window; ``NN`` is (query token, key token)
h, d  attention heads, and channels per head
T     rows of the relative position bias table, (2 wh - 1)(2 ww - 1)
K     classes (``logits_BK``)
R     rows: leading axes flattened into one, as a matrix product or a per-row op sees them
      (every token of a token-wise linear layer, ``x_RI``; every (image, channel), ``q_RS``)
I, O  input and output features of a linear layer or a convolution (``w_IO``)
L     levels of an 8-bit intensity histogram, 256 (``hist_RL``)
A     attempts of a draw that may be rejected (random erasing's boxes, the random-resized crop)
V     views of an image at test time (``logits_VBK``)
P     members of a population (a leading axis of a stacked train state)
0-9   a digit: an axis of that literal size, ``pos_1SC`` (one), ``offset_B2`` (a (row,
      column) pair), ``matrix_B22`` (2 x 2)
====  =====================================================================================
"""

__version__ = "0.1.0"
