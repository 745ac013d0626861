# The two commands: `make demo` runs the platform on the local stack, `make test` runs the tests.
# Both create the virtualenv and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck stack-up stack-down bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m scripts.demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check shared services scripts tests
	$(VENV)/bin/mypy

# Files and per-module settings are in pyproject.toml's [tool.mypy].
typecheck: $(STAMP)
	$(VENV)/bin/mypy

stack-up: $(STAMP)
	$(PY) -m scripts.stack up

stack-down: $(STAMP)
	$(PY) -m scripts.stack down

clean:
	rm -rf $(VENV) .stack .pytest_cache .mypy_cache grafana/statsd/node_modules
