# smtprelay developer entry points. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test check lint typecheck clean venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per extra set, refreshed whenever pyproject.toml changes.
$(VENV)/.installed-demo: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[testing]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-demo
	$(PY) examples/quickstart.py

lint: $(VENV)/.installed-test
	$(PY) -m ruff check src tests examples $(wildcard benchmarks)
	$(PY) -m ruff format --check src

typecheck: $(VENV)/.installed-test
	$(PY) -m mypy

check: lint typecheck

# pytest exits 5 when it collected no test; make treats that like any failure.
test: check
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist src/*.egg-info
