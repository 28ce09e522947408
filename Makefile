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
# CPU machines take torch's CPU build: a local wheel if pip is configured with one, else the
# PyTorch CPU index. GPU hosts (nvidia-smi present) take PyPI's CUDA build. See README.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)

SAMPLE_DIR := data/sample
TINY_MODEL := models/tiny-ko
SEED ?= 0

.PHONY: setup espeak sample-data tiny-model demo test repro clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
ifeq ($(HAS_GPU),yes)
	$(BIN)/pip install -q $(TORCH)
else
	$(BIN)/pip install -q --no-index $(TORCH) 2>/dev/null \
	  || $(BIN)/pip install -q $(TORCH) --index-url $(TORCH_CPU_INDEX) --extra-index-url https://pypi.org/simple
endif
	$(BIN)/pip install -q -e '.[dev,kocer]'
	touch $(STAMP)

espeak:
	@command -v espeak-ng >/dev/null || { \
	  echo "espeak-ng not found: installing it with apt-get (needed to synthesise the sample corpus)"; \
	  { apt-get update -qq && apt-get install -y -qq espeak-ng; } >/dev/null 2>&1 \
	  || { sudo -n true 2>/dev/null && sudo apt-get update -qq && sudo apt-get install -y -qq espeak-ng; } >/dev/null 2>&1 \
	  || { echo "ERROR: could not install espeak-ng. Install it yourself (Debian/Ubuntu: apt-get install espeak-ng;" \
	            "macOS: brew install espeak-ng), or skip the sample and set discover.root to a real corpus."; exit 1; }; }

sample-data: setup espeak
	python -m whisper_ko.sample_corpus --out $(SAMPLE_DIR) --seed $(SEED)

tiny-model: setup
	python -m whisper_ko.tiny_model --out $(TINY_MODEL) --n-mels 80 --seed $(SEED)

repro: setup
	dvc repro

demo: sample-data tiny-model
	dvc repro
	@echo; cat reports/benchmark.md

test: setup espeak
	python -m pytest -q

clean:
	rm -rf data/manifests data/features models/finetuned reports checkpoints dvclive
