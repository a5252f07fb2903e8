# One venv for everything; `make test` and `make demo` set it up themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: test demo clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

demo: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH sh tools/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info

# proxyDHCP replies/s and latency beside dnsmasq (root: uses network namespaces).
.PHONY: bench-dhcp
bench-dhcp: $(BIN)/.installed
	$(BIN)/python benchmarks/dhcp.py

# TFTP MiB/s beside tftpd-hpa and atftpd on loopback (see benchmarks/tftp.py for packages).
.PHONY: bench-tftp
bench-tftp: $(BIN)/.installed
	$(BIN)/python benchmarks/tftp.py
