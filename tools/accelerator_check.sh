#!/usr/bin/env bash
# The accelerator check (docs/performance.md, "Accelerators (awaiting a device)"): the backend,
# the parity tests, a two-epoch training run and the bench matrix, each step with its own
# timeout, ending with one JSON summary (also written to --out).
#
#   bash tools/accelerator_check.sh [--out FILE] [--budget_s S]   # on the device, < 10 min
#   bash tools/accelerator_check.sh --cpu-smoke --out FILE        # the same, tiny, on the CPU
#   bash tools/accelerator_check.sh --plan                        # the steps' commands only
#
# The interpreter: $PYTHON where set (one with swinjax's dependencies installed, on a GPU with
# jax[cuda12]; this clone is put first on PYTHONPATH), else this clone's .venv, which
# `make install` creates where it is missing (on NVIDIA GPUs then run, once,
# `.venv/bin/pip install -e '.[cuda]'`). Exit status 0 when every step passed. The driver is
# tools/accelerator_check.py.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    make -s -C "$repo" install
    PYTHON="$repo/.venv/bin/python"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" "$repo/tools/accelerator_check.py" "$@"
