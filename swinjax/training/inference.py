"""A saved model, ready for inference from its workdir alone: the model and state rebuilt from
the saved config and checkpoint, without the training dataset (a user predicting on another
machine holds only the workdir).

    model = restore_for_inference("workdirs/demo", best=False)
    model.state, model.class_names, model.host_preprocess, model.mesh

The shape of the images the run's evaluation fed the model comes from the config: image folders
are cropped to the model's input size (``config.input_size``), ``synthetic`` has
``synthetic_image_size``, a tfds dataset its features' shape (tfds knows it from the dataset's
definition, without its files); the model is built for it as training built it
(``config.build_model``: ``model_kwargs.img_size`` and ``in_chans`` where set). The number of
classes comes from ``WORKDIR/classes.json``, else from the saved head.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

from swinjax import config as config_lib
from swinjax.data import IMAGEFOLDER, SYNTHETIC
from swinjax.data.loading import host_preprocess
from swinjax.data.preprocess import HostPreprocess
from swinjax.data.sources import image_features, resolve_data_dir
from swinjax.errors import CheckpointError, UserError
from swinjax.models.layers.windows import to_pair
from swinjax.training import checkpoint, parallel
from swinjax.training import state as state_lib
from swinjax.training import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """What the model is fitted to (what ``config.build_model`` reads of a split)."""

    image_shape: tuple[int, int, int]  # (H, W, C) of the images the model was built for
    num_classes: int


@dataclasses.dataclass
class InferenceModel:
    """A restored checkpoint and what inference needs beside it."""

    config: ml_collections.ConfigDict
    state: Any  # the train state, replicated over ``mesh``
    class_names: tuple[str, ...]  # label 0 first
    step: int
    workdir: Path
    mesh: Mesh
    image_shape: tuple[int, int, int]  # (H, W, C) of the images the run's evaluation fed
    host_preprocess: HostPreprocess  # the run's eval view (resize, center crop) to that size
    always_crop: bool  # True: every image goes through the eval view (the run streamed images
    # of varying size); False: images of ``image_shape`` are taken as they are


def open_checkpoint(
    path: str | Path, *, best: bool = False
) -> tuple[Path, str | int, ml_collections.ConfigDict]:
    """``(workdir, which checkpoint, saved config)`` for ``path``: a workdir (its latest
    checkpoint, or with ``best`` the best by validation top-1) or ``WORKDIR/checkpoints/STEP``.
    The config runs in one process (``distributed`` off)."""
    run_dir, step = workdir_lib.resolve(Path(path))
    if best and step is not None:
        raise CheckpointError("--best takes a workdir, not a checkpoint step")
    config = workdir_lib.load_config(run_dir)
    config.distributed = False  # scoring runs in one process
    which = "best" if best else "latest" if step is None else step
    return run_dir, which, config


def model_input(config: ml_collections.ConfigDict, num_classes: int) -> tuple[ModelInput, bool]:
    """``(what the run's splits held, whether the run cropped every image)`` from ``config``
    alone: the shape of the images its evaluation fed the model (the device resized them to
    the model's input where that differs: ``model_kwargs.img_size``, ``in_chans``).
    CheckpointError where the run's tfds dataset is unknown here."""
    if config.dataset == SYNTHETIC:
        size, channels, crops = config.synthetic_image_size, config.synthetic_channels, False
    elif config.dataset.startswith(IMAGEFOLDER):
        size, channels, crops = config_lib.input_size(config), 3, True
    else:
        fixed, channels = _tfds_image(config)
        size, crops = fixed or config_lib.input_size(config), fixed is None
    shape = (*to_pair(size), int(channels))
    return ModelInput(image_shape=shape, num_classes=num_classes), crops


def _tfds_image(config: ml_collections.ConfigDict) -> tuple[tuple[int, int] | None, int]:
    import tensorflow_datasets as tfds

    name = config.dataset
    try:
        builder = tfds.builder(name, data_dir=resolve_data_dir(config.data_dir))
        return image_features(builder, name)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds for a dataset it cannot name
        raise CheckpointError(
            f"the run was trained on tfds dataset {name!r}, which tfds does not know here "
            f"({type(e).__name__}); install the package that defines it, or set "
            "model_kwargs.img_size in the run's config.json to the model's input size"
        ) from e


def restore_for_inference(path: str | Path, *, best: bool = False) -> InferenceModel:
    """The checkpoint at ``path`` (see :func:`open_checkpoint`) restored into the model its saved
    config builds, with its class names (``classes.json``; ``class_0``, ... where the workdir has
    none) and the run's eval preprocessing. Reads no dataset."""
    run_dir, which, config = open_checkpoint(path, best=best)
    names = workdir_lib.load_class_names(run_dir)
    num_classes = len(names) if names else _saved_num_classes(run_dir, which)
    split, always_crop = model_input(config, num_classes)
    config_lib.validate_config(config)
    model = config_lib.build_model(config, split)
    template = state_lib.create_train_state(config, model, steps_per_epoch=1)
    mesh = parallel.make_mesh()
    state, _ = checkpoint.restore(run_dir, which, parallel.replicate(template, mesh))
    pre = host_preprocess(config, "predict", split.image_shape[:2])
    return InferenceModel(
        config=config,
        state=state,
        class_names=tuple(names or (f"class_{k}" for k in range(num_classes))),
        step=int(state.step),
        workdir=run_dir,
        mesh=mesh,
        image_shape=split.image_shape,
        host_preprocess=pre,
        always_crop=always_crop,
    )


def _saved_num_classes(run_dir: Path, which: str | int) -> int:
    """The classes of the saved head (a workdir written before ``classes.json`` was)."""
    params, _ = checkpoint.restore(run_dir, which)
    head = params.get("head", {}).get("fc", {})
    if "kernel" not in head:
        raise CheckpointError(
            f"{run_dir} has no {workdir_lib.CLASSES_FILE} and its checkpoint no classifier head "
            "(head/fc): it holds no classifier to predict with"
        )
    return int(head["kernel"].shape[-1])


def inference_state(model: InferenceModel, ema: bool = False) -> Any:
    """``model``'s train state, its parameters replaced by their EMA with ``ema``; a
    CheckpointError where the run keeps none."""
    state = model.state
    if not ema:
        return state
    if state.ema_params is None:
        raise CheckpointError(
            f"the run in {model.workdir} keeps no EMA of its parameters (config.ema_decay is 0); "
            "leave out --ema"
        )
    return state.replace(params=state.ema_params)


@dataclasses.dataclass(frozen=True)
class Restored:
    """A saved model ready to run: ``model.apply({"params": params}, x)`` on images normalized
    with ``mean``/``std`` (empty: scaled to [0, 1] only) at ``image_size`` (H, W)."""

    config: ml_collections.ConfigDict
    model: Any
    params: Any
    class_names: tuple[str, ...]
    step: int
    ema: bool  # whether ``params`` are the EMA of the parameters
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def image_size(self) -> tuple[int, int]:
        """The model's input (H, W)."""
        return state_lib.image_shape(self.model)[:2]


def restore_params(path: str | Path, *, best: bool = False, ema: bool = False) -> Restored:
    """The model and (host) parameters of the checkpoint at ``path``, as
    :func:`restore_for_inference` restores it (no dataset read); ``ema``: the EMA of the
    parameters. What ``swinjax.export`` writes out."""
    model = restore_for_inference(path, best=best)
    state = inference_state(model, ema)
    return Restored(
        config=model.config,
        model=state.model,
        params=jax.device_get(state.params),
        class_names=model.class_names,
        step=model.step,
        ema=ema,
        mean=tuple(state.mean),
        std=tuple(state.std),
    )
