# The two commands of the quick start: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
# pytest-xdist workers for `make test`: a test file's tests run on one worker (--dist loadfile),
# so its module fixtures are built once. Two shorten the suite on a 2-core machine, as most
# tests wait on brokers, databases and subprocesses; PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

.PHONY: demo test lint bench install clean-venv

# The runtime installation (what the demo needs): pip only.
$(VENV)/.installed: pyproject.toml constraints.txt scripts/bootstrap-venv
	scripts/bootstrap-venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

# Plus what the tests and linters need …
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# … and the peer libraries the benchmarks compare against.
$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/aquami demo $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(VENV)/.installed-dev
	scripts/test-deps
	@if [ -z "$$AQUAMI_TEST_DATABASE_URL" ]; then scripts/timescaledb-up >/dev/null; fi
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	scripts/test-deps
	@if [ -z "$$AQUAMI_TEST_DATABASE_URL" ]; then scripts/timescaledb-up >/dev/null; fi
	$(BIN)/python -m benchmarks.run_all $(ARGS)

clean-venv:
	rm -rf $(VENV)
