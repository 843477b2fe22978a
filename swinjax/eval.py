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
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX or TensorFlow is imported: see swinjax.runtime
    from swinjax import runtime

    runtime.prepare_process()

from pathlib import Path

from absl import flags

from swinjax import cli
from swinjax.training import checkpoint


def run(
    ckpt: str,
    split_name: str = "test",
    data_dir: str | None = None,
    best: bool = False,
    batch_size: int = 0,
    tta: bool = False,
    tta_shift: int = -1,
) -> dict:
    """Restores the checkpoint and evaluates it on ``split_name``; returns the JSON record."""
    from swinjax import data
    from swinjax.config import build_model, input_size
    from swinjax.training import evaluation, recipe
    from swinjax.training.state import create_train_state

    workdir, step = checkpoint.resolve(Path(ckpt))
    if best and step is not None:
        raise checkpoint.CheckpointError("--best takes a workdir, not a checkpoint step")
    config = checkpoint.load_config(workdir)
    if data_dir:
        config.data_dir = data_dir
    split_key = {"test": "test_split", "val": "val_split", "train": "train_split"}.get(split_name)
    split_spec = config[split_key] if split_key else split_name
    split = data.load_split(config, split_spec, input_size(config))
    model = build_model(config, split)
    template = create_train_state(config, model, steps_per_epoch=1)
    ckpt_mgr = checkpoint.Checkpointer(workdir, read_only=True)
    steps_saved = ckpt_mgr.all_steps()
    if not steps_saved:
        raise checkpoint.CheckpointError(f"{ckpt_mgr.directory} holds no checkpoint")
    if best:
        step = ckpt_mgr.best_step()
        if step is None:
            raise checkpoint.CheckpointError(
                f"no checkpoint under {workdir} has validation metrics"
            )
    if step is None:
        restored = ckpt_mgr.restore_latest(template)
        assert restored is not None
    else:
        if step not in steps_saved:
            raise checkpoint.CheckpointError(f"step {step} is not among the saved {steps_saved}")
        try:
            restored = ckpt_mgr.restore(step, template)
        except Exception as e:  # noqa: BLE001 - judged by is_bad_checkpoint, else re-raised
            if not checkpoint.is_bad_checkpoint(e):
                raise
            raise checkpoint.CheckpointError(
                f"checkpoint {ckpt_mgr.directory}/{step} does not match the model in "
                f"{workdir / checkpoint.CONFIG_FILE}: {type(e).__name__}: {str(e)[:400]}"
            ) from e
    state, _ = restored
    shift = 0  # the views' move: the flag's, or where it is -1 the run's eval_tta_shift
    if tta:
        shift = recipe.tta(config)[1] if tta_shift < 0 else tta_shift
    metrics = evaluation.evaluate_with_ema(
        state,
        split,
        batch_size or config.eval_batch_size or config.batch_size,
        tta=tta,
        tta_shift=shift,
    )
    return {**metrics, "step": int(state.step), "split": split_name, "tta": tta, "tta_shift": shift}


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
    flags.DEFINE_bool(
        "tta", False, "flip test-time augmentation: average image and mirror", flag_values=fv
    )
    flags.DEFINE_integer(
        "tta_shift",
        -1,
        "with --tta, also views moved by +-this many pixels; -1: the run's eval_tta_shift",
        flag_values=fv,
    )
    flags.DEFINE_integer("batch_size", 0, "0: the config's eval batch size", flag_values=fv)


def main(argv: list[str]) -> int:
    """``python -m swinjax.eval`` with ``argv`` (``argv[0]`` the program); returns the exit
    status: 0, or 2 with a message for a bad path or a mismatched checkpoint."""
    return cli.main(
        argv, define_flags, _work, program="swinjax.eval", description=__doc__, required=("ckpt",)
    )


def _work(fv: flags.FlagValues) -> dict:
    return run(fv.ckpt, fv.split, fv.data_dir, fv.best, fv.batch_size, fv.tta, fv.tta_shift)


if __name__ == "__main__":
    cli.run_program(main)
