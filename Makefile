# One venv for everything; `make test` and `make demo` set it up themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: test demo demo-http demo-packages clean

# What `make demo` installs (as root) on a fresh Debian 12: a QEMU node with
# Debian's iPXE ROMs, the site's DHCP server, the ramdisk's busybox.
DEMO_PACKAGES = python3-venv qemu-system-x86 ipxe-qemu seabios ipxe dnsmasq-base \
                busybox-static iproute2

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

# A virtual node netboots against the appliance and is imaged (tools/netboot/).
demo: demo-packages
	$(MAKE) $(BIN)/.installed
	$(BIN)/python -m tools.netboot.demo

demo-packages:
	@if [ "$$(id -u)" != 0 ]; then \
	    echo "make demo needs root: it creates network namespaces, a bridge and a tap" \
	         "device for a QEMU node, and installs these Debian packages if missing:" \
	         "$(DEMO_PACKAGES). Run it as root (e.g. sudo make demo)." >&2; \
	    exit 1; \
	fi
	@missing=$$(for p in $(DEMO_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q ' installed$$' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	    echo "== Installing Debian packages: $$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The same flow without a VM: this host plays the node over HTTP (no root).
demo-http: $(BIN)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH sh tools/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info .cache/netboot repository/static/demo

# proxyDHCP replies/s and latency beside dnsmasq (root: uses network namespaces).
.PHONY: bench-dhcp
bench-dhcp: $(BIN)/.installed
	$(BIN)/python benchmarks/dhcp.py

# TFTP MiB/s beside tftpd-hpa and atftpd on loopback (see benchmarks/tftp.py for packages).
.PHONY: bench-tftp
bench-tftp: $(BIN)/.installed
	$(BIN)/python benchmarks/tftp.py
