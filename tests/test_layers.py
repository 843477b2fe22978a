"""The package's layers hold: the import-linter contracts of pyproject.toml pass, and no two
swinjax modules import each other, directly or through a chain (imports inside functions
included). Each check is also shown to fail on a copy of the package with one upward import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]  # not from conftest: the cycle probe imports this file

# `lint-imports --no-cache` in the current directory (the command `make lint` runs).
LINT = "import sys, importlinter.cli as c; sys.exit(c.lint_imports(no_cache=True))"
# Prints the cycles of the package importable from the current directory, as JSON.
CYCLES = (
    "import json, sys; sys.path.insert(0, '.'); sys.path.append(sys.argv[1]); import grimp; "
    "from tests.test_layers import import_cycles; "
    "print(json.dumps(import_cycles(grimp.build_graph('swinjax', cache_dir=None))))"
)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every direct import ``a -> b`` for which ``b`` also reaches ``a``, as the chain
    ``[a, b, ..., a]``: empty where the module graph has no cycle."""
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append([importer, *back])
    return cycles


def _run(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layer_contracts_hold() -> None:
    out = _run(LINT, REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "kept, 0 broken." in out.stdout


def test_no_two_modules_import_each_other() -> None:
    import swinjax

    assert Path(swinjax.__file__).parent == REPO / "swinjax"  # the graph of this tree
    graph = grimp.build_graph("swinjax", cache_dir=None)
    assert len(graph.modules) > 50
    assert import_cycles(graph) == []


def test_an_upward_import_inside_a_function_breaks_both_checks(tmp_path) -> None:
    """A copy of the package whose model imports the training program inside a function: the
    layers contract names that import, and the cycle check finds the loop it closes
    (swinjax.train -> ... -> swinjax.models.swin -> swinjax.train)."""
    shutil.copytree(REPO / "swinjax", tmp_path / "swinjax", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    swin = tmp_path / "swinjax" / "models" / "swin.py"
    swin.write_text(
        swin.read_text() + "\n\ndef _upward() -> None:\n    from swinjax import train  # noqa\n"
    )
    lint = _run(LINT, tmp_path)
    assert lint.returncode == 1, lint.stdout[-3000:] + lint.stderr[-3000:]
    assert "swinjax imports only go down its layers BROKEN" in lint.stdout
    assert "swinjax.models.swin -> swinjax.train" in lint.stdout
    cycles = json.loads(_run(CYCLES, tmp_path, str(REPO)).stdout)
    assert ["swinjax.models.swin", "swinjax.train"] in [c[:2] for c in cycles]
    assert all(c[0] == c[-1] for c in cycles)
