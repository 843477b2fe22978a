"""Score a saved model: ``python -m swinjax.eval --ckpt PATH [--split test] [--best] [--tta]``.

PATH is a training workdir (its latest checkpoint, or with ``--best`` the best by validation
top-1, of the parameters or of their EMA, whichever is higher) or one checkpoint step
(``WORKDIR/checkpoints/STEP``). The config saved in the workdir rebuilds the model, so nothing
else is needed. The last line printed is one JSON object with ``loss``, ``top1``, ``top5``,
``num_examples``, ``step``, ``split``, ``tta`` and ``tta_shift``, plus ``ema_loss``,
``ema_top1`` and ``ema_top5`` for a run that keeps an EMA of its parameters (``ema_decay``
> 0). ``--tta``: flip test-time augmentation (the average of the softmax of each image and
its mirror), with ``--tta_shift N`` (default: the run's ``eval_tta_shift``) also both moved
by +-N pixels. A bad path or a checkpoint that does not match exits with status 2 and a
message saying what is wrong.

``--report DIR`` also writes the evaluation report of the same predictions into DIR
(``report.json``, ``confusion.png``, ``reliability.png``, ``mistakes.png``, ``per_class.png``,
``index.html``; see docs/evaluation.md) and adds ``report`` (DIR) to the record. A DIR that
holds other files is refused; one that holds a report is replaced only with
``--overwrite_report``.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX or TensorFlow is imported: see swinjax.runtime
    from swinjax import runtime

    runtime.prepare_process()

from absl import flags

from swinjax import cli
from swinjax.serve.report import writer as report_writer
from swinjax.training import evaluation


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("ckpt", None, "workdir or WORKDIR/checkpoints/STEP", flag_values=fv)
    flags.DEFINE_string(
        "split",
        "test",
        "test, val, train (the config's splits) or a tfds split string",
        flag_values=fv,
    )
    flags.DEFINE_string("data_dir", None, "tfds data directory override", flag_values=fv)
    flags.DEFINE_bool(
        "best", False, "the best checkpoint by validation top-1 (params or EMA)", flag_values=fv
    )
    cli.define_tta_flags(fv)
    flags.DEFINE_integer("batch_size", 0, "0: the config's eval batch size", flag_values=fv)
    flags.DEFINE_string(
        "report", None, "also write the evaluation report into this directory", flag_values=fv
    )
    flags.DEFINE_bool(
        "overwrite_report",
        False,
        "replace a report already in --report's directory",
        flag_values=fv,
    )


def main(argv: list[str]) -> int:
    """``python -m swinjax.eval`` with ``argv`` (``argv[0]`` the program); returns the exit
    status: 0, or 2 with a message for a bad path or a mismatched checkpoint."""
    return cli.main(
        argv, define_flags, _work, program="swinjax.eval", description=__doc__, required=("ckpt",)
    )


def _work(fv: flags.FlagValues) -> dict:
    kwargs = dict(
        data_dir=fv.data_dir,
        best=fv.best,
        batch_size=fv.batch_size or None,  # 0: the config's
        tta=fv.tta,
        tta_shift=cli.tta_shift(fv),
    )
    if fv.report:
        return report_writer.evaluate_with_report(
            fv.ckpt, fv.split, report_dir=fv.report, overwrite=fv.overwrite_report, **kwargs
        )
    return evaluation.evaluate_checkpoint(fv.ckpt, fv.split, **kwargs)


if __name__ == "__main__":
    cli.run_program(main)
