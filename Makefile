# Thin wrappers around the `harness` command. Everything installs into .venv on first use.
#   make bench                      default model, default workload, llama.cpp
#   make bench MODEL=x.gguf WORKLOAD=chat CONCURRENCY=1,4 BACKEND=llamacpp POWER=auto
#   make test                       install test deps and run every test (slow ones too)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness

WORKLOAD ?= default
MODEL ?=
BACKEND ?=
CONCURRENCY ?=
RATE ?=
POWER ?=
OUTPUT ?= results
ARGS ?=

BENCH_FLAGS := --workload $(WORKLOAD) --output $(OUTPUT) \
  $(if $(MODEL),--model $(MODEL)) $(if $(BACKEND),--backend $(BACKEND)) \
  $(if $(CONCURRENCY),--concurrency $(CONCURRENCY)) $(if $(RATE),--rate $(RATE)) \
  $(if $(POWER),--power $(POWER)) $(ARGS)

.PHONY: all bench env test test-unit test-gpu install model clean-venv help

all: help

help:
	@echo "make bench   measure (MODEL= WORKLOAD= BACKEND= CONCURRENCY= RATE= POWER= ARGS=)"
	@echo "make env     show what this machine has"
	@echo "make test    install test dependencies and run all tests"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.stamp-install: $(PY) pyproject.toml scripts/install-llamacpp scripts/llamacpp-cmake-args
	sh scripts/install-llamacpp $(PY)
	$(PY) -m pip install --quiet -e '.[llamacpp,openai,test]'
	touch $@

install: $(VENV)/.stamp-install

model: install
	$(PY) -c "from harness.models import default_model; print(default_model())"

bench: install
	$(HARNESS) bench $(BENCH_FLAGS)

env: install
	$(HARNESS) env

test: install
	$(PY) -m pytest tests -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-unit: install
	$(PY) -m pytest tests/unit -q

test-gpu: install
	$(PY) -m pytest tests/gpu -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

clean-venv:
	rm -rf $(VENV)
