# Developer and CI entry points.  Every target that needs Python first makes sure .venv exists and holds
# kraftpy with its test extras; that step is skipped while .venv/.installed is newer than pyproject.toml.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST := $(BIN)/pytest -q -p no:cacheprovider

.PHONY: setup run test test-fast codegen proto bench lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

run: setup
	$(BIN)/kraftpy broker --config config/server.properties

# No xdist: the machine has 2 cores and the integration tests run broker processes of their own.
# pytest exits 5 when it collects nothing; that is a failure here, never a pass.
test: setup
	@$(PYTEST) tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-fast: setup
	@$(PYTEST) tests --ignore=tests/integration; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test-fast: pytest collected no tests" >&2; fi; exit $$rc

codegen: setup
	$(BIN)/python -m cluster.wire.codegen

proto:
	@if ls proto/*.proto >/dev/null 2>&1; then \
	  echo "proto/*.proto exist but no generation rule is written yet: add it to the Makefile" >&2; exit 1; \
	else \
	  echo "no .proto files in proto/ yet: nothing to generate"; \
	fi

bench: setup
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check cluster tests bench
