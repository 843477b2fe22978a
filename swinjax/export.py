"""Export a saved model: ``python -m swinjax.export --ckpt PATH --format F --out DIR``.

PATH is a training workdir (its latest checkpoint, or with ``--best`` the best by validation
top-1) or one checkpoint step (``WORKDIR/checkpoints/STEP``); ``--ema`` exports the EMA of the
parameters (a run with ``ema_decay`` > 0). Formats, each written into the directory DIR:

- ``timm``: ``model.safetensors`` in timm's layout and ``config.json`` (architecture,
  model_args, pretrained_cfg, label_names): ``timm.create_model("local-dir:DIR",
  pretrained=True)``; refused for models timm's Swin cannot build (the Keras example, conv stems);
- ``stablehlo``: ``jax.export`` of uint8 images -> logits and probabilities, any batch size:
  ``jax.export.deserialize(open("DIR/model.stablehlo", "rb").read()).call(images)``; for this
  machine's backend, or ``--platforms cpu,cuda`` (any of JAX's: cpu, cuda, rocm, tpu);
- ``savedmodel``: a TensorFlow SavedModel (``jax2tf``), signatures ``serving_default`` (uint8
  images) and ``serving_float`` (float in [0, 1]);
- ``onnx``: ``jax2onnx`` (``pip install 'swinjax[onnx]'``), checked with ``onnxruntime``.

The run's normalization is inside every format but timm's (there: ``pretrained_cfg``). An
unknown format, a non-empty DIR without ``--overwrite`` or a bad checkpoint exits with status 2
before anything is compiled. The last line printed is one JSON object: format, out, files,
step, ema, seconds.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX or TensorFlow is imported: see swinjax.runtime
    from swinjax import runtime

    runtime.prepare_process()

from absl import flags

from swinjax import cli
from swinjax.serve import export as export_lib
from swinjax.training import inference


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("ckpt", None, "workdir or WORKDIR/checkpoints/STEP", flag_values=fv)
    flags.DEFINE_string("format", None, f"one of {', '.join(export_lib.FORMATS)}", flag_values=fv)
    flags.DEFINE_string("out", None, "the directory to write the export into", flag_values=fv)
    flags.DEFINE_bool(
        "best", False, "the best checkpoint by validation top-1 (params or EMA)", flag_values=fv
    )
    flags.DEFINE_list(
        "platforms",
        [],
        "stablehlo only: where the export may run, e.g. cpu,cuda (default: this machine's)",
        flag_values=fv,
    )
    flags.DEFINE_bool("ema", False, "the EMA of the parameters instead of them", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "replace a non-empty --out directory", flag_values=fv)


def main(argv: list[str]) -> int:
    """``python -m swinjax.export`` with ``argv`` (``argv[0]`` the program); returns the exit
    status: 0, or 2 with a message for a bad format, output directory or checkpoint."""
    return cli.main(
        argv,
        define_flags,
        _work,
        program="swinjax.export",
        description=__doc__,
        required=("ckpt", "format", "out"),
    )


def _work(fv: flags.FlagValues) -> dict:
    platforms = tuple(fv.platforms)
    export_lib.check_request(fv.format, fv.out, fv.overwrite, platforms)  # before any reading
    restored = inference.restore_params(fv.ckpt, best=fv.best, ema=fv.ema)
    return export_lib.export_model(
        restored, fv.format, fv.out, overwrite=fv.overwrite, platforms=platforms
    )


if __name__ == "__main__":
    cli.run_program(main)
