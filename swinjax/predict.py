"""Classify image files: ``python -m swinjax.predict --ckpt WORKDIR PATH [PATH ...]``.

PATH: image files (any suffix), folders (searched recursively for .jpg, .jpeg, .png, .gif, .bmp)
or globs (``'photos/**/*.png'``). Each image is prepared as the run's evaluation prepares its
images (resize, center crop, normalisation), so a prediction equals ``eval``'s for the same
image. Output: one JSON line per file on stdout, or ``--out FILE.jsonl|.csv``: ``path``, the
top ``--topk`` ``labels``, ``classes`` (names from the run) and ``probabilities``, and
``error`` (the reason, for a file that does not decode). ``--features pooled|stages --out
FILE.npz`` writes embeddings instead (``paths``, ``pooled`` or ``stage_0``.., ``failed_paths``).
Exit status: 0 every file done; 4 some files could not be read (the others' output is written,
the count is on stderr); 2 a bad --ckpt, no images found or a bad --out, before any compiling.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX or TensorFlow is imported: see swinjax.runtime
    from swinjax import runtime

    runtime.prepare_process()

import sys

from absl import flags

from swinjax import cli
from swinjax.data.image_files import find_images
from swinjax.errors import ConfigError, MissingFileError, SomeInputsFailedError
from swinjax.serve import output
from swinjax.serve.predictor import FEATURE_KINDS, Predictor


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("ckpt", None, "workdir or WORKDIR/checkpoints/STEP", flag_values=fv)
    flags.DEFINE_multi_string(
        "images", None, "image files, folders or globs (also given after the flags)", flag_values=fv
    )
    flags.DEFINE_bool("best", False, "the best checkpoint by validation top-1", flag_values=fv)
    flags.DEFINE_bool(
        "ema", False, "the EMA of the parameters (runs with ema_decay > 0)", flag_values=fv
    )
    flags.DEFINE_integer("topk", 5, "classes per file, most probable first", flag_values=fv)
    flags.DEFINE_integer("batch_size", 64, "images per batch (over every device)", flag_values=fv)
    cli.define_tta_flags(fv)
    flags.DEFINE_enum(
        "features", None, list(FEATURE_KINDS), "write embeddings to --out FILE.npz", flag_values=fv
    )
    flags.DEFINE_string(
        "out",
        None,
        "FILE.jsonl or FILE.csv (default: JSON lines on stdout); FILE.npz with --features",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "overwrite", False, "replace an --out file that exists already", flag_values=fv
    )


def main(argv: list[str]) -> int:
    """``python -m swinjax.predict`` with ``argv`` (``argv[0]`` the program); returns the exit
    status: 0, 4 where some files could not be read, 2 for a bad command line or checkpoint."""
    return cli.main(
        argv,
        define_flags,
        _work,
        program="swinjax.predict",
        description=__doc__,
        required=("ckpt",),
        positional="images",
    )


def _work(fv: flags.FlagValues) -> dict | None:
    features = fv.features is not None
    output.check_out(fv.out, features=features, overwrite=fv.overwrite)
    for flag in ("topk", "batch_size"):
        if fv[flag].value < 1:
            raise ConfigError(f"--{flag} {fv[flag].value}: must be >= 1")
    if not fv.images:
        raise MissingFileError(
            "no images given: name image files, folders or globs after the flags"
        )
    files = find_images(fv.images)  # a pattern that matches nothing fails here
    if not files:
        raise MissingFileError(f"no image files under {fv.images}")
    predictor = Predictor.load(
        fv.ckpt,
        best=fv.best,
        batch_size=fv.batch_size,
        tta=fv.tta,
        tta_shift=cli.tta_shift(fv),
        ema=fv.ema,
    )
    if features:
        emb = predictor.embed(files, fv.features, progress=None)
        output.write_embeddings(fv.out, emb.paths, emb.arrays, emb.failed)
        failed = emb.failed
    else:
        rows = predictor.classify(files, fv.topk, progress=None)
        output.write_rows(rows, fv.out, fv.topk)
        failed = [(r["path"], r["error"]) for r in rows if r["error"]]
    _report(failed, len(files))
    if fv.out is None:
        return None  # stdout holds the rows alone
    return {
        "out": fv.out,
        "num_files": len(files),
        "num_failed": len(failed),
        "step": predictor.model.step,
    }


def _report(failed: list[tuple[str, str]], total: int) -> None:
    """Names the files that could not be read on stderr; SomeInputsFailedError if any."""
    if not failed:
        return
    for path, reason in failed[:10]:
        print(f"unreadable: {path}: {reason}", file=sys.stderr)
    raise SomeInputsFailedError(
        f"{len(failed)} of {total} files could not be read as images (their rows hold the "
        "reason); the output for the others is written"
    )


if __name__ == "__main__":
    cli.run_program(main)
