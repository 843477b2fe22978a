"""Saved configs: reading a workdir's ``config.json`` (or a sweep's ``sweep_config.json``) and
bringing one written by an older release forward (:func:`upgrade_saved_config`), and comparing
configs key by key (what a re-run of a workdir or a sweep is checked with).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import ml_collections

from swinjax.config.keys import KEYS, model_fields

# Keys added by a release whose default is not what the releases before did: a config saved
# before the key existed gets this value. Every other key's default is the behaviour before it
# existed (a new tool off, a new choice as it was), checked with `git log -S KEY` for each key:
# - input_pipeline (55a7914): 'auto' streams a split larger than memory_budget_gb; before it,
#   swinjax.train read every split into memory (data.load_splits).
# - augment: written to every config.json since the first one (3970415, the commit that added
#   training and config.json), so no saved config lacks it; its default applies to none.
# - kernels (2f2ba1a): before it, the tuned formulations (today's 'cpu' set) ran on every
#   backend; 'auto' is 'cpu' on the CPU, and the sets compute the same function (same
#   parameters, same dropout masks: tests/test_kernel_sets.py), so the default stands and a
#   re-run with the same experiment file is not refused.
# - bad_images: before it, an unreadable file in an image folder stopped the run with a
#   TensorFlow error, so a saved run that got anywhere had none; 'skip' reads the same files.
BEFORE_THE_KEY: dict[str, Any] = {"input_pipeline": "memory"}


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` (a ``config.json`` as loaded) with every key of :data:`KEYS` it lacks set to
    what the release that wrote it did (:data:`BEFORE_THE_KEY`, else the key's default), every
    ``model_kwargs`` field it lacks set to None (the preset's), and renamed keys renamed. Values
    are JSON values (tuples as lists); keys it does not know are kept (validation names them).
    A config saved by the current release comes back equal."""
    config = copy.deepcopy(saved)
    # 3970415 kept the synthetic dataset's keys in a section `synthetic` and drew its images
    # from config.seed; 158a8be made them flat keys (synthetic_*) with a seed of their own.
    section = config.pop("synthetic", None)
    if isinstance(section, dict):
        for field, value in section.items():
            config.setdefault(f"synthetic_{field}", value)
        config.setdefault("synthetic_seed", config.get("seed", KEYS["seed"].default))
    for key, row in KEYS.items():
        if key not in config:
            config[key] = json.loads(json.dumps(BEFORE_THE_KEY.get(key, row.default)))
    # Before 10d61ac, model_kwargs held only the fields a config set.
    config["model_kwargs"] = {name: None for name in model_fields()} | dict(config["model_kwargs"])
    return config


def saved_config(path: Path) -> dict[str, Any] | None:
    """The config saved at ``path`` (None where there is none), brought forward by
    :func:`upgrade_saved_config`: a run's ``config.json``, or a sweep's ``sweep_config.json``
    (``{"base": flat config, "sweep": ...}``, its base brought forward)."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if set(saved) == {"base", "sweep"}:
        return {"base": upgrade_saved_config(unflatten(saved["base"])), "sweep": saved["sweep"]}
    return upgrade_saved_config(saved)


def flatten(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """The config as one flat JSON-able dict, sub-configs as dotted keys (``model_kwargs.X``)."""
    if isinstance(config, dict):
        tree = json.loads(json.dumps(config, default=str))  # tuples -> lists, as saved
    else:
        tree = json.loads(config.to_json_best_effort())
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in flatten(value).items()})
        else:
            flat[key] = value
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten`: dotted keys back into sub-dicts."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *sections, name = key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return tree


def diff_configs(
    old: ml_collections.ConfigDict | dict,
    new: ml_collections.ConfigDict | dict,
    ignore: frozenset[str] | set[str] = frozenset(),
) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` for every key that differs, keys in ``ignore``
    (top-level names, or dotted ones) left out; JSON-equal values are equal (tuples == lists)."""
    a, b = flatten(old), flatten(new)
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if k not in ignore and k.split(".")[0] not in ignore and a.get(k) != b.get(k)
    }


def describe_diff(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())
