"""House rules a linter does not check, read from the package's source: Flax modules are built
with keyword arguments (a reordered field cannot silently swap two values), and the shape
letters in names (``x_BHWC``) are the ones the legend in ``swinjax/__init__.py`` lists, each in
one row of it. Parsing only (and importing the model's modules): no compilation."""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
import re
from pathlib import Path

import flax.linen as nn
import pytest

import swinjax
from swinjax.models.layers import kernel_sets

PACKAGE = Path(swinjax.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _parsed() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in SOURCES]


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# ------------------------------------------------------------------------ keyword arguments


def _is_module_constructor(obj: object) -> bool:
    if isinstance(obj, functools.partial):
        return _is_module_constructor(obj.func)
    return isinstance(obj, type) and issubclass(obj, nn.Module)


def _linen_aliases(tree: ast.Module) -> set[str]:
    """The names a file gives ``flax.linen`` (``import flax.linen as nn``)."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name == "flax.linen" and a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module == "flax":
            aliases |= {a.asname or a.name for a in node.names if a.name == "linen"}
    return aliases


# The fields of a kernel set that hold a Flax module's constructor (``ks.dense(features=...)``).
KERNEL_SET_CONSTRUCTORS = {
    f.name
    for f in dataclasses.fields(kernel_sets.KernelSet)
    if all(
        _is_module_constructor(getattr(ks, f.name))
        for ks in (kernel_sets.CPU, kernel_sets.REFERENCE)
    )
}


def positional_module_calls(tree: ast.Module) -> list[ast.Call]:
    """Calls that build a flax.linen layer (``nn.Conv``, a kernel set's ``dense``) with a
    positional argument."""
    aliases = _linen_aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute)):
            continue
        func = node.func
        linen_class = (
            isinstance(func.value, ast.Name)
            and func.value.id in aliases
            and _is_module_constructor(getattr(nn, func.attr, None))
        )
        if linen_class or func.attr in KERNEL_SET_CONSTRUCTORS:
            found.append(node)
    return found


def test_the_positional_call_check_finds_positional_layers() -> None:
    assert KERNEL_SET_CONSTRUCTORS == {"dense"}
    source = """
import flax.linen as nn
from flax import linen as fl
a = nn.Dense(3)
b = fl.Conv(8, (3, 3))
c = ks.dense(16, name="fc1")
d = nn.Dense(features=3)
e = nn.gelu(x)
"""
    found = positional_module_calls(ast.parse(source))
    assert [ast.unparse(call.func) for call in found] == ["nn.Dense", "fl.Conv", "ks.dense"]


def test_flax_layers_are_built_with_keyword_arguments() -> None:
    offenders = [
        f"{_where(path, call)}: {ast.unparse(call)[:80]}"
        for path, tree in _parsed()
        for call in positional_module_calls(tree)
    ]
    assert not offenders, "pass every field by keyword:\n" + "\n".join(offenders)


def _module_classes() -> list[tuple[str, type]]:
    """Every linen Module class defined in the package, imported."""
    classes = []
    for path, tree in _parsed():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(base).endswith("Module") for base in node.bases
            ):
                cls = getattr(importlib.import_module(_module_name(path)), node.name)
                if _is_module_constructor(cls):
                    classes.append((_where(path, node), cls))
    return classes


def test_every_module_of_the_package_takes_keywords_only() -> None:
    classes = _module_classes()
    assert len(classes) >= 10  # the model's modules: SwinTransformer, SwinStage, ...
    positional = [
        where
        for where, cls in classes
        if any(
            p.kind is not inspect.Parameter.KEYWORD_ONLY
            for p in inspect.signature(cls).parameters.values()
        )
    ]
    assert not positional, f"declare them `class X(nn.Module, kw_only=True)`: {positional}"


def test_a_positional_field_is_refused() -> None:
    from swinjax.models.layers.blocks import SwinBlock

    with pytest.raises(TypeError, match="positional"):
        SwinBlock(2, (2, 2), (1, 1))


# ----------------------------------------------------------------------------- shape letters


DIGITS = set("0123456789")


def legend_rows() -> list[set[str]]:
    """The letters of each row of the legend table in the package docstring; the row ``0-9``
    (a literal size) stands for every digit."""
    table = swinjax.__doc__.split("====  ====")[1].split("\n====")[0]
    rows = []
    for line in table.splitlines()[1:]:
        if line[:1].strip():  # a row (continuation lines start with spaces)
            tokens = {token.strip() for token in line[:6].split(",")}
            rows.append(DIGITS if tokens == {"0-9"} else tokens)
    return rows


def shape_suffix(name: str) -> str | None:
    """The axes a name spells (``x_BwNC`` -> ``BwNC``), or None: the part after the last
    underscore where it holds an upper-case letter or only digits; constants have none."""
    head, _, suffix = name.rpartition("_")
    if not head.strip("_") or name.isupper() or not re.fullmatch(r"[A-Za-z0-9]+", suffix):
        return None
    return suffix if suffix.isdigit() or any(c.isupper() for c in suffix) else None


def shape_names() -> dict[str, list[str]]:
    """Every shape-suffixed name the package binds (arguments, assignments), with where."""
    names: dict[str, list[str]] = {}
    for path, tree in _parsed():
        for node in ast.walk(tree):
            if isinstance(node, ast.arg):
                name = node.arg
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                name = node.id
            else:
                continue
            if shape_suffix(name):
                names.setdefault(name, []).append(_where(path, node))
    return names


def test_shape_suffixes_are_found() -> None:
    assert [shape_suffix(n) for n in ("x_BwNC", "offset_B2", "pos_1SC", "labels_wN")] == [
        "BwNC",
        "B2",
        "1SC",
        "wN",
    ]
    for name in ("tokens_2d", "threefry_2x32", "drop_path_rate", "_RI_IO", "HF_HUB", "_B", "b1"):
        assert shape_suffix(name) is None, name


def test_each_legend_letter_has_one_row() -> None:
    rows = legend_rows()
    letters = [letter for row in rows for letter in row]
    assert len(rows) >= 15 and DIGITS in rows and all(len(letter) == 1 for letter in letters)
    assert len(letters) == len(set(letters)), f"a letter in two rows: {sorted(letters)}"


def test_every_shape_letter_used_is_in_the_legend_and_every_listed_one_is_used() -> None:
    legend = set().union(*legend_rows())
    names = shape_names()
    unknown = {name: where[0] for name, where in names.items() if set(shape_suffix(name)) - legend}
    assert not unknown, f"letters missing from the legend in swinjax/__init__.py: {unknown}"
    used = set().union(*(set(shape_suffix(name)) for name in names))
    assert legend - DIGITS <= used, (
        f"legend letters no name uses (stale rows): {sorted(legend - used)}"
    )
