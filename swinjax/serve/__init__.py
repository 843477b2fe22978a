"""After training: classifying image files (predict), features for other tasks, export for
serving and for timm, and the evaluation report.

May import: :mod:`swinjax.training` and everything below it; not the sweeps nor the programs.
"""
