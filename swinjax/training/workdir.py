"""What a workdir holds beside its checkpoints, and whether a new run may use it.

A training workdir holds ``config.json`` (:func:`save_config`, read back by :func:`load_config`,
brought forward where an older release wrote it), ``classes.json``: the class names of the
training split, in label order, so that what reads the workdir later (evaluation, a prediction)
can name the classes, ``bad_images.txt`` (:func:`save_bad_images`: the image files left out as
unreadable, ``config.bad_images='skip'``), and ``checkpoints/``
(:mod:`swinjax.training.checkpoint`). A sweep's workdir holds its own config file
(:mod:`swinjax.sweeps.runner`). :func:`check_workdir` is the one check that a workdir may take a
run: nothing in it is overwritten by a run of another config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence, Set
from pathlib import Path
from typing import Any

import ml_collections

from swinjax import config as config_lib
from swinjax.data.image_files import BadImage
from swinjax.errors import CheckpointError, ConfigError

CONFIG_FILE = "config.json"
CLASSES_FILE = "classes.json"
CHECKPOINT_DIR = "checkpoints"
BAD_IMAGES_FILE = "bad_images.txt"


def save_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json_best_effort(indent=1, sort_keys=True) + "\n")


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config of the run in ``workdir`` (its ``config.json``), written by this release or
    an older one (brought forward: ``swinjax.config.upgrade_saved_config``)."""
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: {workdir} is not a swinjax workdir (expected {CONFIG_FILE} and "
            f"{CHECKPOINT_DIR}/ written by `python -m swinjax.train --workdir {workdir}`)"
        )
    return ml_collections.ConfigDict(config_lib.saved_config(path))


def resolve(path: Path) -> tuple[Path, int | None]:
    """``(workdir, step or None)`` for a training workdir (its latest or best step: None) or one
    checkpoint step (``WORKDIR/checkpoints/STEP``); CheckpointError for anything else."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if (path / CONFIG_FILE).is_file():
        return path, None
    if path.name.isdigit() and path.parent.name == CHECKPOINT_DIR:
        return path.parent.parent, int(path.name)
    if path.name == CHECKPOINT_DIR:
        return path.parent, None
    raise CheckpointError(
        f"{path} is neither a swinjax workdir (with {CONFIG_FILE}) nor a checkpoint step "
        f"(WORKDIR/{CHECKPOINT_DIR}/STEP)"
    )


def check_workdir(
    workdir: Path,
    config: ml_collections.ConfigDict | dict,
    saved: dict[str, Any] | None,
    *,
    ignore: Set[str],
    holds: str,
    fix: str,
) -> None:
    """Refuses a ``workdir`` that exists and is not a directory, or whose ``saved`` config (None:
    it has none) differs from ``config`` in a key outside ``ignore``; the message says that it
    ``holds`` another run, the keys that differ, and the ``fix``."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} exists and is not a directory; pick another path")
    diff = config_lib.diff_configs(saved, config, ignore) if saved is not None else {}
    if diff:
        raise ConfigError(
            f"--workdir {workdir} holds {holds} ({config_lib.describe_diff(diff)}); {fix}"
        )


def class_names(split: Any) -> tuple[str, ...]:
    """The names of ``split``'s classes, label 0 first; the label numbers where the dataset names
    none."""
    return tuple(split.class_names) or tuple(str(k) for k in range(split.num_classes))


def save_class_names(workdir: Path, names: Sequence[str]) -> None:
    """Writes ``WORKDIR/classes.json``: the names of the classes, label 0 first."""
    path = Path(workdir) / CLASSES_FILE
    path.write_text(json.dumps(list(names), indent=1) + "\n")


def load_class_names(workdir: Path) -> tuple[str, ...] | None:
    """The class names saved in ``workdir``; None where it has none (a workdir written before
    they were saved)."""
    path = Path(workdir) / CLASSES_FILE
    return tuple(json.loads(path.read_text())) if path.is_file() else None


def check_classes(workdir: Path, split: Any) -> None:
    """Refuses to score ``split`` with the model of ``workdir`` where their classes differ (the
    class names saved there, where there are any, against the split's)."""
    saved = load_class_names(workdir)
    names = class_names(split)
    if saved is None or saved == names:
        return
    pairs = enumerate(zip(saved, names, strict=False))  # the common classes; counts said apart
    differ = [f"class {k} is {b!r} here, {a!r} there" for k, (a, b) in pairs if a != b]
    if len(saved) != len(names):
        differ.insert(0, f"{len(names)} classes here, {len(saved)} there")
    raise ConfigError(
        f"{split.name} does not have the classes the model in {workdir} was trained on "
        f"({CLASSES_FILE}): {'; '.join(differ[:5])}; score it on the dataset (and "
        "config.classes) it was trained with"
    )


def save_bad_images(workdir: Path, bad: Sequence[BadImage]) -> Path | None:
    """Writes ``WORKDIR/bad_images.txt``: one line per unreadable image file left out of the
    run's splits, ``PATH<tab>REASON``, in the order given; returns its path. With none, removes
    the file an earlier start of the run may have written and returns None."""
    path = Path(workdir) / BAD_IMAGES_FILE
    if not bad:
        path.unlink(missing_ok=True)
        return None
    path.write_text("".join(f"{b.path}\t{b.reason}\n" for b in bad))
    return path
