"""After training: classifying image files (predict), features for other tasks, export for
serving and for timm, and the evaluation report.

    from swinjax.serve import Predictor, predict_files
    rows = predict_files("workdirs/demo", ["photos/"], topk=3)

Modules: :mod:`.images` (files to model inputs, as the run's evaluation prepares them),
:mod:`.predictor` (:class:`Predictor`: classify and embed files), :mod:`.output` (JSON lines,
CSV, ``.npz``); :mod:`.export` (``python -m swinjax.export``: :mod:`.serving`, the function
every format holds, and one module a format: :mod:`.export_timm`, :mod:`.export_stablehlo`,
:mod:`.export_savedmodel`, :mod:`.export_onnx`); :mod:`.report` (``eval --report``).

May import: :mod:`swinjax.training` and everything below it; not the sweeps nor the programs.
"""

from swinjax.serve.predictor import Embeddings, Predictor, predict_files

__all__ = ["Embeddings", "Predictor", "predict_files"]
