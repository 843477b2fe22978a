"""The documentation runs as written.

Every ```` ```python ```` block of README.md and docs/*.md is run, page by page: a page's blocks
in order in one fresh interpreter (later blocks continue earlier ones, as the pages say), whose
working directory is a scratch folder holding links to the repository's ``tests/golden`` and
``experiments``, so that the ``workdirs/...`` an example writes are thrown away. A failure names
the page, the block and the line of the page it failed on.

A block whose fence reads ```` ```python no-run ```` is shown and not run: for what cannot run
offline on a CPU (a GPU, the network) or needs a package the project's environment has not (torch,
onnxruntime: docs/inference.md).

The commands of the ```` ```bash ```` blocks are not run (they train for minutes), but the programs
(``python -m swinjax.X``) and the files under ``experiments/`` and ``benchmarks/`` they name must
exist.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NO_RUN = "no-run"
PROGRAM = re.compile(r"python -m (swinjax(?:\.[a-z_]+)*)")
REPO_FILE = re.compile(r"(?<![\w/.])((?:experiments|benchmarks)/[\w./-]+\.py)")
# What the examples read, linked into the scratch folder.
LINKED = ("tests/golden", "tests/fixtures", "experiments")

# Runs the blocks given as JSON on stdin in one namespace. Each is compiled under the page's name
# and padded to its line in the page, so a traceback points at the page's own line.
RUNNER = r"""
import json, sys, traceback
page, blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for number, (line, code) in enumerate(blocks, start=1):
    try:
        exec(compile("\n" * (line - 1) + code, page, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"DOC BLOCK FAILED: {page} block {number} (line {line})", file=sys.stderr)
        sys.exit(1)
"""


@dataclasses.dataclass(frozen=True)
class Block:
    language: str
    line: int  # the page's line of the block's first line of code (1-based)
    code: str
    runs: bool


def blocks_of(text: str) -> list[Block]:
    """The fenced code blocks of a markdown page, with their language and line."""
    return [
        Block(
            language=m[1],
            line=text.count("\n", 0, m.start()) + 2,
            code=m[3],
            runs=NO_RUN not in m[2].split(),
        )
        for m in FENCE.finditer(text)
    ]


def run_blocks(page: str, blocks: list[Block], cwd: Path) -> subprocess.CompletedProcess:
    """Runs ``blocks`` in one fresh interpreter in ``cwd``, importing this checkout's swinjax."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    payload = json.dumps([page, [(b.line, b.code) for b in blocks]])
    return subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=payload,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _scratch(tmp_path: Path) -> Path:
    for rel in LINKED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).symlink_to(REPO / rel, target_is_directory=True)
    return tmp_path


# Pages whose examples train and sweep for minutes: in the slow tier (make test-slow, CI).
SLOW_PAGES = {"docs/api.md", "docs/inference.md"}


def _python_pages() -> list:
    pages = [p for p in PAGES if any(b.language == "python" for b in blocks_of(p.read_text()))]
    return [
        pytest.param(
            p,
            id=str(p.relative_to(REPO)),
            marks=[pytest.mark.slow] if str(p.relative_to(REPO)) in SLOW_PAGES else [],
        )
        for p in pages
    ]


@pytest.mark.parametrize("page", _python_pages())
def test_python_examples_run_as_written(page: Path, tmp_path: Path) -> None:
    name = str(page.relative_to(REPO))
    blocks = [b for b in blocks_of(page.read_text()) if b.language == "python" and b.runs]
    out = run_blocks(name, blocks, _scratch(tmp_path))
    if out.returncode != 0:
        failed = re.search(r"DOC BLOCK FAILED: (.*)", out.stderr)
        where = failed[1] if failed else f"{name} (the interpreter, rc {out.returncode})"
        pytest.fail(f"{where} failed:\n{out.stderr[-4000:]}", pytrace=False)


def test_api_page_has_its_examples() -> None:
    """The extraction finds the API page's examples (a broken fence would silently run none)."""
    blocks = blocks_of((REPO / "docs" / "api.md").read_text())
    assert len([b for b in blocks if b.language == "python" and b.runs]) >= 8


def test_a_failing_block_is_named_by_page_and_line(tmp_path: Path) -> None:
    page = (
        "```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 1\nraise RuntimeError('x')\n```\n"
    )
    blocks = blocks_of(page)
    assert [(b.line, b.runs) for b in blocks] == [(2, True), (8, True)]
    out = run_blocks("docs/example.md", blocks, tmp_path)
    assert out.returncode == 1
    assert "DOC BLOCK FAILED: docs/example.md block 2 (line 8)" in out.stderr
    assert 'File "docs/example.md", line 9' in out.stderr  # the raise, at its line in the page
    assert "RuntimeError: x" in out.stderr


def test_no_run_marks_a_block_that_is_not_run() -> None:
    (block,) = blocks_of("```python no-run\nimport not_installed_here\n```\n")
    assert block.language == "python" and not block.runs


def test_commands_name_programs_and_files_that_exist() -> None:
    """``python -m swinjax.X`` modules and experiments/ or benchmarks/ files named in any code
    block of the pages (and of benchmarks/peers/README.md) exist in this checkout."""
    pages = [*PAGES, REPO / "benchmarks" / "peers" / "README.md"]
    missing = []
    for page in pages:
        for block in blocks_of(page.read_text()):
            for module in PROGRAM.findall(block.code):
                if importlib.util.find_spec(module) is None:
                    missing.append(f"{page.name}:{block.line}: python -m {module}")
            for path in REPO_FILE.findall(block.code):
                if not (REPO / path).is_file():
                    missing.append(f"{page.name}:{block.line}: {path}")
    assert missing == []
