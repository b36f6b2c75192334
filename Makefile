# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test install install-test

# The daemon alone (no machine-learning libraries): embedded queue, SQLite, no weights needed.
serve: $(VENV)/.daemon
	$(BIN)/radtriage serve

# Everything the tests need, then every test.
test: $(VENV)/.test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(VENV)/.daemon: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# torch first: 2.13.0 is the CPU build on this machine's disk; any other request pulls CUDA.
$(VENV)/.test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[ml,eval,test]'
	touch $@ $(VENV)/.daemon
