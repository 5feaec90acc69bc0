# The two commands of the README: `make demo` and `make test`. Each sets up what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYS_STAMP := .sysdeps.stamp

.PHONY: demo test setup sysdeps lint bench clean

demo: setup
	$(VENV)/bin/observatory demo

test: setup sysdeps
	bash scripts/test.sh

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# System packages for the lab (namespaces, resolvers, web servers, censor) and the browser tests.
sysdeps:
	bash scripts/sysdeps.sh

lint: setup
	$(VENV)/bin/ruff check observatory tests benchmarks
	$(VENV)/bin/mypy

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
