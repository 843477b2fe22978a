"""The evaluation report (``python -m swinjax.eval --ckpt W --report DIR``): per-class
precision, recall and F1, the confusion matrix, the most confident mistakes and calibration,
written as ``report.json``, PNG figures and one ``index.html``.

- :mod:`.metrics`: the numbers (scikit-learn's metrics; the ECE), no plotting;
- :mod:`.figures`: the figures;
- :mod:`.html`: the page;
- :mod:`.writer`: a checkpoint evaluated and its report written.
"""
