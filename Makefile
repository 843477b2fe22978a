# swinjax: every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= experiments/keras_example.py
WORKDIR ?= workdirs/$(basename $(notdir $(CONFIG)))
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: install test lint train eval demo finetune-demo bench golden clean presets sweep

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Two workers, one test file each at a time (files share compiled steps within a process).
test: install
	$(PY) -m pytest -q -n 2 --dist loadfile -p no:warnings $(PYTEST_ARGS)

# Style, then the layer contract of pyproject.toml ([tool.importlinter]: imports go down only).
lint: install
	$(VENV)/bin/ruff check swinjax tests experiments tools
	$(VENV)/bin/ruff format --check swinjax tests experiments tools
	$(VENV)/bin/lint-imports --no-cache

presets: install
	$(PY) -m swinjax.presets

train: install
	$(PY) -m swinjax.train --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

# A hyperparameter sweep: make sweep [CONFIG=experiments/SWEEP.py] [WORKDIR=...] [ARGS=...];
# without CONFIG, the one-minute offline demo (experiments/sweep_demo.py -> workdirs/sweep_demo).
SWEEP_CONFIG  := $(if $(filter file,$(origin CONFIG)),experiments/sweep_demo.py,$(CONFIG))
SWEEP_WORKDIR := $(if $(filter file,$(origin WORKDIR)),workdirs/$(basename $(notdir $(SWEEP_CONFIG))),$(WORKDIR))
sweep: install
	$(PY) -m swinjax.sweep --config $(SWEEP_CONFIG) --workdir $(SWEEP_WORKDIR) $(ARGS)

# Scores a workdir's latest checkpoint: make eval CKPT=workdirs/keras_example [ARGS=--best]
CKPT ?= $(WORKDIR)
eval: install
	$(PY) -m swinjax.eval --ckpt $(CKPT) $(ARGS)

# One minute, offline: a tiny model on the synthetic dataset, then eval of its checkpoint.
demo: install
	$(PY) -m swinjax.train --config experiments/demo.py --workdir workdirs/demo $(ARGS)
	$(PY) -m swinjax.eval --ckpt workdirs/demo

# Fine-tuning, offline, minutes: the demo's checkpoint at another image and window size, new head.
finetune-demo: install
	test -d workdirs/demo/checkpoints || $(PY) -m swinjax.train --config experiments/demo.py --workdir workdirs/demo
	$(PY) -m swinjax.train --config experiments/finetune_demo.py --workdir workdirs/finetune_demo $(ARGS)

# Throughput of the train/eval steps, the input pipeline and the whole loop (JSON last line).
bench: install
	$(PY) -m swinjax.bench --config $(CONFIG) $(ARGS)

# Regenerates tests/golden/*.npz from timm (needs torch + timm, installed into .venv-timm).
golden:
	test -x .venv-timm/bin/python || $(PYTHON) -m venv .venv-timm
	.venv-timm/bin/pip install -q torch==2.14.1 torchvision==0.29.1 timm==1.0.31 numpy
	.venv-timm/bin/python tools/make_golden.py --out tests/golden

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
