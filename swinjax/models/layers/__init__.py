"""Building blocks of the Swin Transformer, with no knowledge of the whole model: window
geometry (:mod:`.windows`), window attention in three formulations (:mod:`.attention`),
token-wise linear layers (:mod:`.linear`), dropout on a fused generator (:mod:`.dropout`), the
exact GELU (:mod:`.activations`), the kernel sets that choose among them (:mod:`.kernel_sets`),
and the linen modules built from them (:mod:`.blocks`: patch embedding, window attention, Swin
block, patch merging; :mod:`.blocks_v2`: Swin V2's cosine attention and post-norm block;
:mod:`.stage`: a stage of either).

May import: :mod:`swinjax.errors` and the libraries; nothing else of swinjax.
"""
