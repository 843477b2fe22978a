"""The optimizer: AdamW with every hyperparameter an array (:mod:`.adamw`), learning-rate
schedules (:mod:`.schedules`), parameter groups for fine-tuning (layer-wise learning-rate decay
and freezing, :mod:`.param_groups`), and the parameters' exponential moving average
(:mod:`.ema`).

May import: :mod:`swinjax.errors` and the libraries (optax, flax, jax); nothing else of swinjax.
"""
