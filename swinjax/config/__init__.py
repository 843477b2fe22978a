"""The one config system: flat ``ml_collections`` configs, the table of their keys, their
validation, what they build, and saved configs of older releases brought forward.

Experiment files in ``experiments/`` start from :func:`base_config` and change a few fields
(variants of one experiment: ``get_config("variant")``, ``--config experiments/x.py:variant``);
every key can be overridden on the command line as ``--config.key=value``. Validation happens
before anything is loaded or compiled, and each error names the key and the fix.

Every key is defined once, in :data:`KEYS` (:mod:`.keys`): its default, its role (what changing
it does to a run), its section (the part of the package it configures), and whether it is an
array of the train state that a population may vary. Every key list is derived from that table:
:data:`RESUMABLE` (may differ when a workdir is re-run), :data:`SWEEP_IGNORED` (left out of a
sweep point's fingerprint), :data:`HPARAM_KEYS` and :data:`TOOL_HPARAM_KEYS` (the float32
scalars of ``TrainState.hparams``), :data:`POPULATION_KEYS`, :func:`section_keys`.

The keys stay flat (``config.learning_rate``, not ``config.optim.learning_rate``): sweep points,
``results.jsonl``, the RESUMABLE diffs of a re-run, TensorBoard tags, every saved
``config.json`` and every documented command name one flat key, and sections would rename all
of them. The ``section`` column groups them where a reader needs the grouping: ``--list_keys``
(:func:`describe_keys`) and docs/training.md.

Modules: :mod:`.keys` (the table, the base config), :mod:`.validate`, :mod:`.build` (model, step
counts, input size), :mod:`.saved` (config.json of older releases, comparing configs).

May import: the data, augment, optim, models and weights layers and :mod:`swinjax.errors`; not
the training core, the sweeps or the programs.
"""

from swinjax.config.build import build_model, input_size, training_steps
from swinjax.config.keys import (
    ALWAYS,
    EVAL,
    HPARAM_KEYS,
    KEYS,
    LAUNCH,
    LENGTH,
    MODEL_FIELD_KEYS,
    OUTPUT,
    POPULATION_KEYS,
    RESUMABLE,
    ROLES,
    RUN,
    SECTIONS,
    SWEEP_IGNORED,
    TOOL_HPARAM_KEYS,
    Key,
    base_config,
    describe_keys,
    model_field_placeholders,
    model_fields,
    model_overrides,
    section_keys,
)
from swinjax.config.saved import (
    BEFORE_THE_KEY,
    describe_diff,
    diff_configs,
    flatten,
    saved_config,
    unflatten,
    upgrade_saved_config,
)
from swinjax.config.validate import check_keys, validate_config, validate_for_images

__all__ = [
    "ALWAYS",
    "BEFORE_THE_KEY",
    "EVAL",
    "HPARAM_KEYS",
    "KEYS",
    "LAUNCH",
    "LENGTH",
    "MODEL_FIELD_KEYS",
    "OUTPUT",
    "POPULATION_KEYS",
    "RESUMABLE",
    "ROLES",
    "RUN",
    "SECTIONS",
    "SWEEP_IGNORED",
    "TOOL_HPARAM_KEYS",
    "Key",
    "base_config",
    "build_model",
    "check_keys",
    "describe_diff",
    "describe_keys",
    "diff_configs",
    "flatten",
    "input_size",
    "model_field_placeholders",
    "model_fields",
    "model_overrides",
    "saved_config",
    "section_keys",
    "training_steps",
    "unflatten",
    "upgrade_saved_config",
    "validate_config",
    "validate_for_images",
]
