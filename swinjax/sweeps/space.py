"""The search space of a sweep: the ``sweep`` sub-config, its validation and its points.

A sweep config file is an ordinary training config (``swinjax.config.base_config()``) plus a
``sweep`` sub-ConfigDict (start from :func:`default_sweep_config`)::

    config.sweep = search.default_sweep_config()
    config.sweep.mode = "grid"                      # or "random"
    config.sweep.grid = {"learning_rate": [1e-3, 3e-3], "weight_decay": [0.0, 0.05]}
    config.sweep.random = {"learning_rate": ("log_uniform", 1e-4, 1e-2),
                           "seed": ("int_uniform", 0, 99)}   # with sweep.num_samples
    config.sweep.execution = "population"            # or "sequential"

A point is a dict ``{key: value}`` over the swept keys: top-level config keys, or fields of a
config section as dotted keys: ``sweep.grid = {"model_kwargs": {"drop_path_rate": [0.0, 0.1]}}``
varies ``model_kwargs.drop_path_rate``. Grid points are the cartesian product in
sorted key order; random points are a pure function of ``sweep.seed``. Everything is validated
(every point's whole config included) before any data is loaded or anything compiled.
"""

from __future__ import annotations

import difflib
import itertools
import math
import numbers
from typing import Any

import ml_collections
import numpy as np

from swinjax.config import POPULATION_KEYS, validate_config
from swinjax.errors import ConfigError
from swinjax.training import recipe

MODES = ("grid", "random")
EXECUTIONS = ("sequential", "population")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")
Point = dict[str, Any]


def default_sweep_config() -> ml_collections.ConfigDict:
    """Every ``sweep`` field, with its default."""
    s = ml_collections.ConfigDict()
    s.mode = "grid"  # "grid" or "random"
    s.grid = ml_collections.ConfigDict()  # key -> list of values (grid mode)
    s.random = ml_collections.ConfigDict()  # key -> (distribution, ...) (random mode)
    s.num_samples = 0  # random mode: how many points
    s.seed = 0  # random mode: the sampler's seed (training seeds are config.seed)
    s.execution = "sequential"  # or "population": K models in one vmapped step
    s.population_size = 0  # population mode: at most this many per population; 0: all
    return s


def split_config(
    config: ml_collections.ConfigDict,
) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
    """``(base, sweep)``: an unlocked copy of the training config without ``sweep``, and the
    ``sweep`` sub-config with every default filled in. Raises ValueError if there is none."""
    if "sweep" not in config:
        raise ConfigError(
            "the config has no `sweep` section; a sweep config file sets config.sweep = "
            "swinjax.sweeps.space.default_sweep_config() and its grid or random fields"
        )
    base = ml_collections.ConfigDict(config.to_dict())
    del base["sweep"]
    given = config.sweep.to_dict() if config.sweep is not None else {}
    sweep = default_sweep_config()
    unknown = sorted(set(given) - set(sweep))
    if unknown:
        raise ConfigError(f"sweep.{unknown[0]}: unknown field{_did_you_mean(unknown[0], sweep)}")
    for key, value in given.items():
        try:
            sweep[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
        except TypeError as e:  # e.g. a float where an int belongs
            raise ConfigError(f"sweep.{key}={value!r}: {e}") from None
    return base, sweep


def validate_sweep(base: ml_collections.ConfigDict, sweep: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the ``sweep`` field and the fix for anything that cannot run."""
    if sweep.mode not in MODES:
        raise ConfigError(f"sweep.mode={sweep.mode!r}: must be one of {MODES}")
    if sweep.execution not in EXECUTIONS:
        raise ConfigError(f"sweep.execution={sweep.execution!r}: must be one of {EXECUTIONS}")
    for key in ("num_samples", "seed", "population_size"):
        value = sweep[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ConfigError(f"sweep.{key}={value!r}: must be an integer >= 0")
    space = search_space(sweep)
    if not space:
        raise ConfigError(f"sweep.{sweep.mode} is empty; give at least one key to vary")
    other = "random" if sweep.mode == "grid" else "grid"
    if sweep[other]:
        raise ConfigError(f"sweep.{other} is set but sweep.mode={sweep.mode!r}; clear one of them")
    for key in space:
        _check_key(base, f"sweep.{sweep.mode}.{key}", key)
        if sweep.execution == "population" and key not in POPULATION_KEYS:
            raise ConfigError(
                f"sweep.{sweep.mode}.{key}: changes the compiled program (or how long a model "
                f"trains), so it cannot vary inside one population, which can only vary "
                f"{sorted(POPULATION_KEYS)}; use sweep.execution = 'sequential'"
            )
        if sweep.mode == "grid":
            _check_values(f"sweep.grid.{key}", space[key])
        else:
            _check_distribution(f"sweep.random.{key}", space[key])
    if sweep.mode == "random" and sweep.num_samples < 1:
        raise ConfigError("sweep.num_samples must be >= 1 in random mode")
    if not base.get("val_split"):
        raise ConfigError(
            "config.val_split is empty; a sweep ranks its points by validation accuracy"
        )
    for point in expand(sweep):
        try:
            validate_config(point_config(base, point))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"sweep point {point}: {e}") from None
    if sweep.execution == "population":
        tools = {recipe.from_config(point_config(base, p)) for p in expand(sweep)}
        if len(tools) > 1:
            raise ConfigError(
                f"sweep.{sweep.mode}: its points turn different recipe tools on or off (an "
                "ema_decay, mixup_alpha, cutmix_alpha or erase_prob of 0 is off); one population "
                "needs them all on or all off; use sweep.execution = 'sequential'"
            )


def expand(sweep: ml_collections.ConfigDict) -> list[Point]:
    """The sweep's points, in a deterministic order, duplicates dropped.

    Grid: the cartesian product over the keys in sorted order (the last key varies fastest).
    Random: ``sweep.num_samples`` draws, each key in sorted order from its distribution, from
    ``numpy.random.default_rng(sweep.seed)``: ``("uniform", lo, hi)``, ``("log_uniform", lo,
    hi)`` (uniform in log space), ``("int_uniform", lo, hi)`` (both ends included) or
    ``("choice", v1, v2, ...)``.
    """
    space = search_space(sweep)
    keys = sorted(space)
    if sweep.mode == "grid":
        combos = itertools.product(*(list(space[k]) for k in keys))
        points = [dict(zip(keys, combo, strict=True)) for combo in combos]
    else:
        rng = np.random.default_rng(sweep.seed)
        points = [
            {k: _sample(rng, tuple(space[k])) for k in keys} for _ in range(sweep.num_samples)
        ]
    unique: dict[tuple, Point] = {}
    for point in points:
        unique.setdefault(point_id(point), point)
    return list(unique.values())


def search_space(sweep: ml_collections.ConfigDict) -> dict[str, Any]:
    """The grid's value lists (or the random distributions) by swept key, a section's fields as
    dotted keys: ``{"model_kwargs": {"drop_rate": [...]}}`` -> ``{"model_kwargs.drop_rate": ...}``.
    """
    space: dict[str, Any] = {}
    for key, value in sweep[sweep.mode].items():
        if isinstance(value, ml_collections.ConfigDict | dict):
            space.update({f"{key}.{field}": v for field, v in value.items()})
        else:
            space[key] = value
    return space


def point_config(base: ml_collections.ConfigDict, point: Point) -> ml_collections.ConfigDict:
    """A copy of ``base`` with the point's values set (dotted keys into sections)."""
    config = ml_collections.ConfigDict(base.to_dict())
    for key, value in point.items():
        try:
            if "." in key:
                section, field = key.split(".", 1)
                config[section][field] = value
            else:
                config[key] = value
        except TypeError as e:  # ConfigDict keeps a key's type: a float into an int key
            raise ConfigError(f"{key}={value!r}: {e}") from None
    return config


def point_id(point: Point) -> tuple:
    """A hashable identity of a point: equal for equal values (1 == 1.0, lists == tuples)."""

    def freeze(v: Any) -> Any:
        return tuple(freeze(x) for x in v) if isinstance(v, list | tuple) else v

    return tuple(sorted((k, freeze(v)) for k, v in point.items()))


# ---------------------------------------------------------------------------------- helpers


def _did_you_mean(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, [str(k) for k in known], n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {sorted(known)}"


def _check_key(base: ml_collections.ConfigDict, where: str, key: str) -> None:
    section = key.split(".", 1)[0]
    if section == "sweep" or section not in base:
        raise ConfigError(f"{where}: not a config key{_did_you_mean(section, base)}")
    is_section = isinstance(base[section], ml_collections.ConfigDict)
    if is_section and "." not in key:
        raise ConfigError(f"{where}: is a section; sweep its fields: {{{key!r}: {{FIELD: ...}}}}")
    if "." in key and not is_section:
        raise ConfigError(f"{where}: {section!r} is not a section of the config")
    # A wrong field of a section (model_kwargs) is reported by the point's validate_config.


def _check_values(where: str, values: Any) -> None:
    if not isinstance(values, list | tuple):
        raise ConfigError(f"{where}={values!r}: must be a list of values")
    if not values:
        raise ConfigError(f"{where} is empty; give at least one value")
    ids = [point_id({"v": v}) for v in values]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}={list(values)}: repeats a value")


def _check_distribution(where: str, spec: Any) -> None:
    usage = (
        "use ('uniform', lo, hi), ('log_uniform', lo, hi), ('int_uniform', lo, hi) "
        "or ('choice', v1, v2, ...)"
    )
    if not isinstance(spec, list | tuple) or not spec or spec[0] not in DISTRIBUTIONS:
        raise ConfigError(f"{where}={spec!r}: not a distribution; {usage}")
    kind, args = spec[0], spec[1:]
    if kind == "choice":
        _check_values(where, list(args))
        return
    if len(args) != 2 or not all(_is_finite(a) for a in args) or not args[0] < args[1]:
        raise ConfigError(f"{where}={spec!r}: needs two finite bounds lo < hi; {usage}")
    if kind == "log_uniform" and args[0] <= 0:
        raise ConfigError(f"{where}={spec!r}: log_uniform needs lo > 0")
    if kind == "int_uniform" and not all(isinstance(a, numbers.Integral) for a in args):
        raise ConfigError(f"{where}={spec!r}: int_uniform needs integer bounds")


def _is_finite(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _sample(rng: np.random.Generator, spec: tuple) -> Any:
    kind, args = spec[0], spec[1:]
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1]))
    if kind == "log_uniform":
        return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
    if kind == "int_uniform":
        return int(rng.integers(args[0], args[1], endpoint=True))
    return args[int(rng.integers(len(args)))]  # choice
