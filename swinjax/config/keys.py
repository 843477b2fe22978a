"""The table of config keys (:data:`KEYS`), one :class:`Key` a row, and everything derived from
it: the base config, the keys a re-run may change, the keys a sweep ignores, the float32
hyperparameters of the train state, the keys a population may vary, and ``--list_keys``.

A row says what a key is for every part of the package at once: its default (the behaviour
before the key existed, so that older workdirs mean what they meant), its role (what changing it
does to a run), its section (the part of the package it configures), and whether it is an array
of ``TrainState.hparams`` and may vary inside one population of a sweep. Adding a sweepable
hyperparameter is one row here (``hparam=ALWAYS, population=True``) plus the code that reads
``state.hparams[KEY]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from swinjax.models import SwinTransformer
from swinjax.optim.schedules import SCHEDULES

# Roles: what changing a key does to a run. RUN: shapes what the run computes. LENGTH: how long
# it goes on. OUTPUT: what is logged, written or shown, where data are read from, how evaluation
# is batched. EVAL: only the final test evaluation. LAUNCH: how the processes start.
RUN, LENGTH, OUTPUT, EVAL, LAUNCH = "run", "length", "output", "eval", "launch"
ROLES = (RUN, LENGTH, OUTPUT, EVAL, LAUNCH)
# Sections: the part of the package a key configures (what --list_keys groups by).
SECTIONS = {
    "data": "what is read and how: splits, batches, host preprocessing (swinjax.data)",
    "model": "the network (swinjax.models)",
    "weights": "weights to start from (swinjax.weights)",
    "optim": "AdamW, its schedule, parameter groups, the EMA (swinjax.optim)",
    "augment": "device-side augmentation and normalization (swinjax.augment)",
    "train": "the training run: seed, loss, length (swinjax.training)",
    "eval": "validation and test scoring",
    "output": "logs, checkpoints, figures",
    "launch": "how the processes start",
}
# Key.hparam: ALWAYS, or the name of the swinjax.training.recipe.Recipe flag (a recipe tool)
# while which the key is an array of TrainState.hparams.
ALWAYS = "always"


@dataclasses.dataclass(frozen=True)
class Key:
    """One row of :data:`KEYS`."""

    default: Any
    role: str  # one of ROLES
    meaning: str  # one line: what --list_keys and the docs say
    hparam: str = ""  # "": not in TrainState.hparams; ALWAYS; or a Recipe flag that must be on
    population: bool = False  # may vary inside one population (changes state arrays only)
    section: str = ""  # one of SECTIONS: set by the table's grouping (_GROUPS)

    def __post_init__(self) -> None:
        # Rows are written positionally: a swapped role and meaning fails here, at import.
        if self.role not in ROLES:
            raise ValueError(f"Key role {self.role!r} is not one of {ROLES}")
        if self.hparam and not (self.role == RUN and self.population):
            raise ValueError("an hparam Key is a RUN key that a population may vary")
        if self.section not in ("", *SECTIONS):
            raise ValueError(f"Key section {self.section!r} is not one of {list(SECTIONS)}")


def _array(default: Any, meaning: str, hparam: str = "") -> Key:
    """A RUN key held in arrays of the train state (``hparam``: a float32 scalar of
    ``TrainState.hparams``), not in the compiled program: a population may vary it."""
    return Key(default, RUN, meaning, hparam=hparam, population=True)


_DATA = {
    "dataset": Key("cifar100", RUN, "a tfds name (optionally 'name:version') or 'synthetic'"),
    "data_dir": Key("", OUTPUT, "tfds data directory; '': $TFDS_DATA_DIR, else tfds' default"),
    "train_split": Key("train[:90%]", RUN, "tfds split string of the training data"),
    "val_split": Key("train[90%:]", RUN, "validated after every epoch; '': no validation"),
    "test_split": Key("test", EVAL, "evaluated once at the end; '': no test evaluation"),
    "classes": Key("", RUN, "keep only these classes, e.g. '5,6,7,8,9' (renumbered 0..k-1)"),
    "batch_size": Key(128, RUN, "global batch size (split across all devices)"),
    "download": Key(True, OUTPUT, "download and prepare a tfds dataset missing from data_dir"),
    "input_pipeline": Key("auto", RUN, "'memory', 'stream' (tf.data), 'auto': memory if it fits"),
    "memory_budget_gb": Key(4.0, RUN, "auto: memory when the decoded split is at most this size"),
    "shuffle_buffer": Key(16_384, RUN, "stream: shuffle buffer per data shard, in examples"),
    # OUTPUT, not RUN: a run that goes on with 'fail' met no bad file, so it reads what 'skip'
    # would; a re-run may switch (swinjax.data.screening).
    "bad_images": Key("skip", OUTPUT, "image folders: 'skip' unreadable files, or 'fail' (exit 2)"),
    "rrc_scale": Key((0.08, 1.0), RUN, "images of varying size: random-resized-crop area range"),
    "rrc_ratio": Key((3 / 4, 4 / 3), RUN, "... and its aspect-ratio (width / height) range"),
    "eval_crop_fraction": Key(0.875, RUN, "... evaluation: center crop / resized shorter side"),
    "resize_method": Key("bilinear", RUN, "host and device resizes: 'bilinear' or 'bicubic'"),
    "synthetic_num_classes": Key(10, RUN, "dataset='synthetic': classes"),
    "synthetic_image_size": Key(16, RUN, "dataset='synthetic': image height and width"),
    "synthetic_channels": Key(3, RUN, "dataset='synthetic': channels"),
    "synthetic_train_examples": Key(1200, RUN, "dataset='synthetic': size of split 'train'"),
    "synthetic_test_examples": Key(300, RUN, "dataset='synthetic': size of split 'test'"),
    "synthetic_seed": Key(0, RUN, "dataset='synthetic': its own seed (data fixed across seeds)"),
}
_MODEL = {
    "model": Key("keras_example", RUN, "a preset of swinjax.models.PRESETS"),
    "model_kwargs": Key({}, RUN, "SwinTransformer fields overriding the preset's (None: its)"),
    "dtype": Key("float32", RUN, "compute: float32 or bfloat16 (docs/training.md Precision)"),
    "kernels": Key("auto", RUN, "'auto' (cpu on the CPU, reference elsewhere), 'reference', 'cpu'"),
    "remat": Key("none", RUN, "recompute activations in backward: 'none', 'blocks', 'full'"),
}
_WEIGHTS = {
    "init_from": Key("", RUN, "weights: a file, a swinjax workdir, hf-hub:REPO (timm/HF)"),
    "init_head": Key("auto", RUN, "with init_from: 'auto' (reset if its shape differs) or 'reset'"),
}
_OPTIM = {
    "learning_rate": _array(1e-3, "peak learning rate", ALWAYS),
    "weight_decay": _array(1e-4, "decoupled, times the learning rate (optax and Keras)", ALWAYS),
    "schedule": Key("constant", RUN, f"learning-rate schedule, one of {SCHEDULES}"),
    # TrainState.hparams["warmup_steps"] (swinjax.training.state: in steps, not epochs)
    "warmup_epochs": _array(0.0, "warmup (one_cycle: the rise to the peak) over these epochs"),
    "min_lr": _array(0.0, "the learning rate a schedule's decay ends at (not 'constant')", ALWAYS),
    "grad_clip_norm": _array(0.0, "> 0: clip gradients to this global norm; 0: off", ALWAYS),
    "decay_all": Key(False, RUN, "True: decay biases, norms and position tables too (Keras)"),
    "b1": _array(0.9, "Adam's beta 1", ALWAYS),
    "b2": _array(0.999, "Adam's beta 2", ALWAYS),
    "adam_eps": _array(1e-8, "Adam's epsilon (Keras' default is 1e-7)", ALWAYS),
    "adam_eps_keras": _array(False, "True: epsilon on the uncorrected sqrt(v), as Keras", ALWAYS),
    "adam_mu_dtype": Key("float32", RUN, "Adam's first moment: 'float32' or 'bfloat16' (memory)"),
    "layer_decay": _array(1.0, "layer-wise lr decay (timm's grouping); 1.0: none", ALWAYS),
    # The trainable mask of the train state.
    "freeze": _array("", "'backbone' (a linear probe) or regexes of parameter paths, by commas"),
    "ema_decay": _array(0.0, "> 0: EMA of the params (bias-corrected), validated too", "ema"),
}
_AUGMENT = {
    "augment": Key("crop_flip", RUN, "on the device: 'crop_flip', 'flip', 'seed_exact' or 'none'"),
    "crop_padding": Key(4, RUN, "crop_flip: zero padding before the random crop, in pixels"),
    "mean": Key((), RUN, "per-channel mean on the [0, 1] scale; (): images scaled to [0, 1] only"),
    "std": Key((), RUN, "per-channel std, with mean"),
    "normalize": Key("", RUN, "'': mean/std as set; 'imagenet'; 'dataset': the dataset's stats"),
    # The recipe tools (swinjax.training.recipe): all off by default.
    "augment_policy": Key("", RUN, "after augment: 'randaugment', 'trivialaugment'; '': none"),
    "randaug_num_ops": Key(2, RUN, "randaugment: ops per image (N)"),
    "randaug_magnitude": _array(9.0, "randaugment: magnitude M, timm's 0..10", "randaugment"),
    "mixup_alpha": _array(0.0, "> 0: mixup per image, lam ~ Beta(alpha, alpha)", "mixup"),
    "cutmix_alpha": _array(0.0, "> 0: CutMix per image, lam ~ Beta(alpha, alpha)", "cutmix"),
    "mix_switch_prob": _array(0.5, "mixup and CutMix both on: probability of CutMix", "mixing"),
    "mix_prob": _array(1.0, "mixup/CutMix on: probability an image is mixed at all", "mixing"),
    "erase_prob": _array(0.0, "> 0: random erasing per image (timm's 'pixel' mode)", "erase"),
}
_TRAIN = {
    "seed": _array(0, "parameters, dropout, augmentation and data order"),  # state.rng
    "label_smoothing": _array(0.1, "targets one_hot * (1 - s) + s / K", ALWAYS),
    # TrainState.hparams["total_steps"] (swinjax.training.state), but it changes how long a
    # member of a population trains: not a population key.
    "num_epochs": Key(40, LENGTH, "epochs; the schedule spans them (re-planned if it changes)"),
    "max_steps": Key(0, LENGTH, "> 0: stop after this many steps in all (smoke runs)"),
    "grad_accum_steps": Key(1, RUN, "microbatches per step (gradients summed, one update)"),
}
_EVAL = {
    "eval_batch_size": Key(0, OUTPUT, "evaluation batch size; 0: batch_size"),
    "eval_tta": Key(False, RUN, "True: validation and test average image and mirror softmaxes"),
    "eval_tta_shift": Key(0, RUN, "> 0, with eval_tta: also both moved by +-this many pixels"),
}
_OUTPUT = {
    "log_every_steps": Key(50, OUTPUT, "train-step metrics written every this many steps"),
    "progress_bar": Key(True, OUTPUT, "a tqdm bar per epoch"),
    "checkpoint_every_epochs": Key(1, OUTPUT, "checkpoint cadence (also on stop and at the end)"),
    "keep_checkpoints": Key(2, OUTPUT, "the latest N checkpoints are kept, plus the best"),
    "num_sample_images": Key(18, OUTPUT, "test images drawn with their predictions at the end"),
}
_LAUNCH = {
    "distributed": Key(False, LAUNCH, "True: jax.distributed.initialize() first (multi-host)"),
    "sharding": Key("replicated", LAUNCH, "train state 'replicated' on every device, or 'fsdp'"),
    "compilation_cache": Key(
        "auto",
        LAUNCH,
        "compiled-step cache folder; 'auto': $JAX_COMPILATION_CACHE_DIR or ~/.cache/swinjax/jax; "
        "'none': off",
    ),
}
_GROUPS = {
    "data": _DATA,
    "model": _MODEL,
    "weights": _WEIGHTS,
    "optim": _OPTIM,
    "augment": _AUGMENT,
    "train": _TRAIN,
    "eval": _EVAL,
    "output": _OUTPUT,
    "launch": _LAUNCH,
}
# Every key, with its default, role, meaning, section, and hparam / population columns.
# Defaults are the Keras seed recipe's where it has one.
KEYS: dict[str, Key] = {
    name: dataclasses.replace(row, section=section)
    for section, rows in _GROUPS.items()
    for name, row in rows.items()
}

# Keys that may differ when a workdir is re-run: they change neither the model nor the data nor
# the recipe. A changed num_epochs re-plans the schedule (swinjax.train says so at start).
RESUMABLE = frozenset(k for k, row in KEYS.items() if row.role != RUN)
# Keys a sweep never reads, left out of a point's fingerprint (the run length is not: it changes
# the result).
SWEEP_IGNORED = frozenset(k for k, row in KEYS.items() if row.role in (OUTPUT, EVAL, LAUNCH))
# The keys that are float32 scalars of TrainState.hparams in every run (besides warmup_steps
# and total_steps, which swinjax.training.state derives from warmup_epochs and num_epochs).
HPARAM_KEYS = tuple(k for k, row in KEYS.items() if row.hparam == ALWAYS)
# ... and those that are while a recipe tool is on: {key: the Recipe flag}.
TOOL_HPARAM_KEYS = {k: row.hparam for k, row in KEYS.items() if row.hparam not in ("", ALWAYS)}
# The keys that only change arrays of the train state (hparams, the trainable mask, the rng):
# points that differ only in these run the same compiled program, so they can share one
# population (and one compile). The members must still agree on which recipe tools are on.
POPULATION_KEYS = frozenset(k for k, row in KEYS.items() if row.population)


def section_keys(section: str) -> tuple[str, ...]:
    """The keys of one section of :data:`SECTIONS`, in the table's order."""
    if section not in SECTIONS:
        raise ValueError(f"no config section {section!r}; the sections: {list(SECTIONS)}")
    return tuple(k for k, row in KEYS.items() if row.section == section)


def describe_keys() -> str:
    """Every key of :data:`KEYS` grouped by section, with its default and meaning, one line
    each: what a program's ``--list_keys`` prints."""
    width = max(map(len, KEYS))
    lines = []
    for section, what in SECTIONS.items():
        lines.append(f"{section}: {what}")
        for key in section_keys(section):
            row = KEYS[key]
            lines.append(f"  {key:<{width}}  {row.default!r:<14}  {row.meaning}")
    return "\n".join(lines)


def base_config() -> ml_collections.ConfigDict:
    """Every key a run reads, with its default (:data:`KEYS`); ``model_kwargs`` holds every
    ``SwinTransformer`` field, unset (None), so that any can be set on the command line."""
    config = ml_collections.ConfigDict()
    for key, row in KEYS.items():
        config[key] = row.default
    config.model_kwargs = model_field_placeholders()
    return config


# SwinTransformer fields set by a top-level key of their own, not through model_kwargs.
MODEL_FIELD_KEYS = ("kernels", "remat")


def model_fields() -> tuple[str, ...]:
    """The fields of ``SwinTransformer`` that ``model_kwargs`` holds (all but
    :data:`MODEL_FIELD_KEYS` and flax's own)."""
    skip = ("parent", "name", *MODEL_FIELD_KEYS)
    return tuple(f.name for f in dataclasses.fields(SwinTransformer) if f.name not in skip)


def model_field_placeholders() -> ml_collections.ConfigDict:
    """A typed, unset (None) entry for every field of :func:`model_fields` (int and tuple sizes
    take an int on the command line; set a pair in a config file)."""
    kinds = (bool, int, float, str, tuple)
    fields = {}
    for name in model_fields():
        default = SwinTransformer.__dataclass_fields__[name].default
        kind = next((k for k in kinds if isinstance(default, k)), None)
        if default is None:
            kind = float  # pos_drop_rate: None means drop_rate
        fields[name] = ml_collections.config_dict.placeholder(kind or str)  # dtypes: names
    return ml_collections.ConfigDict(fields)


def model_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The ``SwinTransformer`` fields ``config`` sets: the ``model_kwargs`` that are set (not
    None), and :data:`MODEL_FIELD_KEYS`."""
    overrides = {k: v for k, v in config.model_kwargs.items() if v is not None}
    return overrides | {k: config[k] for k in MODEL_FIELD_KEYS}
