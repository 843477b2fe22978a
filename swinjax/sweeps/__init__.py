"""Hyperparameter sweeps: the search space of a config's ``sweep`` section, its validation and
its points (:mod:`.space`), and running them, one after another or as populations of models in
one vmapped step, with results that resume point by point (:mod:`.runner`).

May import: :mod:`swinjax.training`, :mod:`swinjax.config` and everything below them; not the
programs.
"""
