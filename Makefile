# Thin wrappers around the `harness` command. Everything installs into .venv on first use.
#   make bench                      default model, default workload, llama.cpp: one user
#                                   (in process) and many (llama-server capacity sweep)
#   make bench MODEL=x.gguf WORKLOAD=chat CONCURRENCY=1,4 BACKEND=llamacpp POWER=auto
#   make test                       install test deps and run every test (slow ones too)
#   make test-unit                  the fast unit tests only (no slow or timing-dependent ones)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
# vLLM lives in a venv of its own (it pins torch, transformers, ...); see scripts/install-vllm.
VENV_VLLM := .venv-vllm
PY_VLLM   := $(VENV_VLLM)/bin/python
VLLM_ENV  := VLLM_CACHE_ROOT=$(CURDIR)/.cache/vllm TORCHINDUCTOR_CACHE_DIR=$(CURDIR)/.cache/inductor

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

# On llama.cpp (the default backend) `make bench` measures both: the in-process rows ("how
# fast for one user") and then a capacity sweep of the same model and workload on
# llama.cpp's own llama-server with parallel slots ("how much for many"), into the same
# OUTPUT. CAPACITY=0 skips the sweep; CAPACITY_CONCURRENCY: the levels (default 1,2,4,8,
# every one measured: llama.cpp on a CPU may gain nothing at 2 and 4 and double at 8), or
# auto (doubled from 1 to the knee, at most CAPACITY_MAX_CONCURRENCY); CAPACITY_ARGS are
# added to the sweep only (ARGS go to both runs).
CAPACITY ?= 1
CAPACITY_CONCURRENCY ?= 1,2,4,8
CAPACITY_MAX_CONCURRENCY ?= 8
CAPACITY_ARGS ?=
CAPACITY_ON := $(filter-out 0 no off false,$(CAPACITY))
CAPACITY_FLAGS := --server llama-server --workload $(WORKLOAD) --output $(OUTPUT) \
  --concurrency $(CAPACITY_CONCURRENCY) \
  $(if $(filter auto,$(CAPACITY_CONCURRENCY)),--max-concurrency $(CAPACITY_MAX_CONCURRENCY)) \
  $(if $(MODEL),--model $(MODEL)) $(if $(POWER),--power $(POWER)) $(ARGS) $(CAPACITY_ARGS)

.PHONY: all bench env test test-unit test-gpu install install-vllm install-openai model \
  clean-venv help browser nightly lint llama-server

all: help

help:
	@echo "make bench   measure (MODEL= WORKLOAD= BACKEND= CONCURRENCY= RATE= POWER= ARGS=);"
	@echo "             on llama.cpp also a llama-server capacity sweep (CAPACITY=0 skips;"
	@echo "             CAPACITY_CONCURRENCY=1,2,4,8|auto CAPACITY_MAX_CONCURRENCY=8 CAPACITY_ARGS=)"
	@echo "make env     show what this machine has"
	@echo "make test    install test dependencies and run all tests"
	@echo "make nightly smoke suite, compare with BASELINE= (default results/reference), report"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.stamp-install: $(PY) pyproject.toml scripts/install-llamacpp scripts/llamacpp-cmake-args
	sh scripts/install-llamacpp $(PY)
	$(PY) -m pip install --quiet -e '.[llamacpp,openai,test]'
	touch $@

install: $(VENV)/.stamp-install

# Only the OpenAI-compatible client (hosted APIs, a server already running): no compiler,
# no llama.cpp build. `make bench BACKEND=openai ARGS="--base-url URL --model NAME"`.
$(VENV)/.stamp-openai: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[openai]'
	touch $@

install-openai: $(VENV)/.stamp-openai

$(PY_VLLM):
	$(PYTHON) -m venv $(VENV_VLLM)
	$(PY_VLLM) -m pip install --quiet --upgrade pip setuptools wheel

$(VENV_VLLM)/.stamp-install: $(PY_VLLM) pyproject.toml scripts/install-vllm
	sh scripts/install-vllm $(PY_VLLM)
	touch $@

install-vllm: $(VENV_VLLM)/.stamp-install

model: install
	$(PY) -c "from harness.models.resolve import default_model; print(default_model())"

ifeq ($(BACKEND),vllm)
bench: install-vllm
	$(VLLM_ENV) $(VENV_VLLM)/bin/harness bench $(BENCH_FLAGS)
else ifeq ($(BACKEND),openai)
bench: install-openai
	$(HARNESS) bench $(BENCH_FLAGS)
else
bench: install $(if $(CAPACITY_ON),llama-server)
	@echo "== llama.cpp in process: how fast for one user (c>1 rows queue: load_mode=serial) =="
	$(HARNESS) bench $(BENCH_FLAGS)
ifneq ($(CAPACITY_ON),)
	@echo "== llama-server, parallel slots: how much for many (CAPACITY=0 skips this) =="
	$(HARNESS) bench $(CAPACITY_FLAGS)
endif
endif

env: install
	$(HARNESS) env

# llama.cpp's own llama-server and llama-bench, built from the sdist of the installed
# llama-cpp-python with the wheel's CMake flags (scripts/build-llama-tool); cached in
# ~/.cache/llm-harness/tools/<key>/bin, so only the first run builds (several minutes).
llama-server: install
	PYTHON=$(PY) bash scripts/build-llama-tool llama-server llama-bench

# Lint: ruff, and the layer rules of the design (import-linter contracts in pyproject.toml:
# a wrong import fails with the name of the rule it breaks).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Lint, then two pytest runs: everything in .venv, then the vLLM tests in .venv-vllm (rc 5 =
# none collected counts as a pass); the target fails if either run fails.
test: install install-vllm browser llama-server lint
	$(PY) -m pytest tests -q --ignore-glob='tests/integration/test_vllm*'; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; \
	  $(VLLM_ENV) HF_HUB_OFFLINE=1 $(PY_VLLM) -m pytest -q tests/integration/test_vllm*.py; \
	  rc2=$$?; if [ $$rc2 -eq 5 ]; then echo "no vLLM tests collected"; rc2=0; fi; \
	  if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$rc2

# The inner loop: unit tests without the slow or timing-dependent ones (under a minute).
test-unit: install
	$(PY) -m pytest tests/unit -q -m "not slow"

test-gpu: install
	$(PY) -m pytest tests/gpu -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

clean-venv:
	rm -rf $(VENV)

# Headless Chromium for the report's browser test: Debian's packages, never a downloaded
# browser. Skipped where chromium and chromedriver exist or apt-get is absent.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  s=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  { $$s apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$s apt-get install -y -qq \
	    chromium chromium-driver >/dev/null; } || echo "browser: could not install chromium;" \
	    "the report browser test will be skipped"; \
	else echo "browser: no apt-get; install Chromium and chromedriver to run the report" \
	  "browser test (it is skipped without them)"; fi

# Nightly regression check: a fixed suite (smoke workload, default model), compared with a
# baseline from the same kind of machine; writes the results, report.html and compare.md
# under NIGHTLY_OUT and fails on a significant regression beyond THRESHOLD percent.
NIGHTLY_WORKLOAD ?= smoke
NIGHTLY_STAMP := $(shell date -u +%Y%m%dT%H%M%SZ)
NIGHTLY_OUT ?= results/nightly/$(NIGHTLY_STAMP)
BASELINE ?= results/reference
# Where a run on hardware with no baseline of its kind is kept as that hardware's baseline
# (REFERENCE/<hardware>/; commit it): the first night on a new machine passes.
REFERENCE ?= results/reference
THRESHOLD ?= 10

nightly: install
	@test -e "$(BASELINE)" || [ "$(BASELINE)" = "$(REFERENCE)" ] || { echo "nightly: no" \
	  "baseline at $(BASELINE); give BASELINE=FILE_OR_FOLDER (results of the same suite on" \
	  "the same kind of machine)"; exit 2; }
	$(HARNESS) bench --workload $(NIGHTLY_WORKLOAD) --output $(NIGHTLY_OUT) --quiet \
	  $(if $(MODEL),--model $(MODEL)) $(if $(POWER),--power $(POWER)) $(ARGS)
	$(HARNESS) compare $(NIGHTLY_OUT) --baseline $(BASELINE) --same-hardware \
	  --new-hardware-baseline $(REFERENCE) --fail-on-regression $(THRESHOLD) --format md \
	  > $(NIGHTLY_OUT)/compare.md; rc=$$?; cat $(NIGHTLY_OUT)/compare.md; \
	  if [ -f $(NIGHTLY_OUT)/new-baseline.txt ]; then base=; else base="$(BASELINE)"; fi; \
	  $(HARNESS) report $$base $(NIGHTLY_OUT) -o $(NIGHTLY_OUT)/report.html \
	  --title "Nightly $(NIGHTLY_WORKLOAD) $(NIGHTLY_STAMP)" || [ $$rc -ne 0 ] || rc=2; \
	  echo "nightly: results, report.html and compare.md in $(NIGHTLY_OUT)"; exit $$rc
