# swinjax: every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= experiments/keras_example.py
# A config file's name, with its variant: experiments/cifar_strong.py:sweep -> cifar_strong_sweep.
run_name = $(subst :,_,$(subst .py,,$(notdir $(1))))
WORKDIR ?= workdirs/$(call run_name,$(CONFIG))
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: install test test-slow lint train eval predict export demo finetune-demo bench golden clean presets sweep peers

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Two workers, one test file each at a time (files share compiled steps within a process).
# `make test`: everything but the end-to-end runs marked slow (633 tests: pytest 7 min 12 s on the idle
# 2-core VM, 2026-12-06, plus about 2 min for the venv from a fresh clone);
# `make test-slow`: those (74: 15 min 2 s); CI (.ci/run) runs both.
PYTEST := $(PY) -m pytest -q -n 2 --dist loadfile -p no:warnings
test: install
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(PYTEST) -m slow $(PYTEST_ARGS)

# Style, then the layer contract of pyproject.toml ([tool.importlinter]: imports go down only).
lint: install
	$(VENV)/bin/ruff check swinjax tests experiments tools benchmarks
	$(VENV)/bin/ruff format --check swinjax tests experiments tools benchmarks
	$(VENV)/bin/lint-imports --no-cache

presets: install
	$(PY) -m swinjax.model --list

train: install
	$(PY) -m swinjax.train --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

# A hyperparameter sweep: make sweep [CONFIG=experiments/SWEEP.py] [WORKDIR=...] [ARGS=...];
# without CONFIG, the one-minute offline demo (experiments/sweep_demo.py -> workdirs/sweep_demo).
SWEEP_CONFIG  := $(if $(filter file,$(origin CONFIG)),experiments/sweep_demo.py,$(CONFIG))
SWEEP_WORKDIR := $(if $(filter file,$(origin WORKDIR)),workdirs/$(call run_name,$(SWEEP_CONFIG)),$(WORKDIR))
sweep: install
	$(PY) -m swinjax.sweep --config $(SWEEP_CONFIG) --workdir $(SWEEP_WORKDIR) $(ARGS)

# Scores a workdir's latest checkpoint: make eval CKPT=workdirs/keras_example [ARGS=--best]
# (ARGS="--report reports/NAME": also the evaluation report, docs/evaluation.md)
CKPT ?= $(WORKDIR)
eval: install
	$(PY) -m swinjax.eval --ckpt $(CKPT) $(ARGS)

# Classifies image files: make predict CKPT=workdirs/NAME IMAGES='photos/ more/*.png' [ARGS=--topk 3]
IMAGES ?=
predict: install
	$(PY) -m swinjax.predict --ckpt $(CKPT) $(ARGS) $(IMAGES)

# Exports a workdir's latest checkpoint for serving or for timm (docs/inference.md, Export):
# make export CKPT=workdirs/demo FORMAT=stablehlo|savedmodel|timm|onnx OUT=exports/demo [ARGS=--ema]
FORMAT ?= stablehlo
OUT    ?= exports/$(notdir $(CKPT))_$(FORMAT)
export: install
	$(PY) -m swinjax.export --ckpt $(CKPT) --format $(FORMAT) --out $(OUT) $(ARGS)

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

# timm and the Keras example live in virtual environments of their own, never in .venv.
TIMM_PACKAGES  := torch==2.14.1 torchvision==0.29.1 timm==1.0.31 transformers==5.25.0 numpy
KERAS_PACKAGES := keras==3.15.1 jax==0.10.2 numpy

# Regenerates tests/golden/ from timm and transformers (installed into .venv-timm): Swin V1,
# transformers' layout, Swin V2 and the timm parameter/FLOP counts of the presets.
golden:
	test -x .venv-timm/bin/python || $(PYTHON) -m venv .venv-timm
	.venv-timm/bin/pip install -q $(TIMM_PACKAGES)
	.venv-timm/bin/python tools/make_golden.py --out tests/golden
	.venv-timm/bin/python tools/make_golden_hf.py --out tests/golden
	.venv-timm/bin/python tools/make_golden_v2.py --out tests/golden

# The peer benchmarks (benchmarks/peers/README.md): the Keras example's Swin (.venv-peer) and
# timm's (.venv-timm), training images/s. Compare with `make bench` run alternately, same session.
peers: .venv-peer/.installed .venv-timm/.installed
	KERAS_BACKEND=jax .venv-peer/bin/python benchmarks/peers/keras_swin.py --steps 30
	.venv-timm/bin/python benchmarks/peers/timm_swin.py cifar_s_32 --steps 8
	.venv-timm/bin/python benchmarks/peers/timm_swin.py swin_t_224 --steps 4
	.venv-timm/bin/python benchmarks/peers/timm_swin.py cifar_s_32_v2 --steps 8
	.venv-timm/bin/python benchmarks/peers/timm_swin.py swinv2_t_256 --steps 4

.venv-peer/.installed:
	test -x .venv-peer/bin/python || $(PYTHON) -m venv .venv-peer
	.venv-peer/bin/pip install -q $(KERAS_PACKAGES)
	touch $@

.venv-timm/.installed:
	test -x .venv-timm/bin/python || $(PYTHON) -m venv .venv-timm
	.venv-timm/bin/pip install -q $(TIMM_PACKAGES)
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
