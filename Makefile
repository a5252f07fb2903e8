# One venv for everything; `make test` and `make demo` set it up themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: test demo clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

demo: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH sh tools/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info
