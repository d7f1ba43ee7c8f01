# Two commands do everything on a fresh Debian-family machine:
#   make demo   installs what it needs, starts the lab vCenter, runs the headless runbooks, prints report paths
#   make test   installs what it needs, then runs every test (the tests start and stop their own labs)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNBOOK := $(VENV)/bin/runbook
APT_PACKAGES := golang-go golang-github-vmware-govmomi-dev iproute2 chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system venv lab demo test test-fast bench bench-scale clean

setup: system venv

# System packages: Go and govmomi's source (the lab is built from them), iproute2 (ping tests make
# network namespaces), Chromium (the browser tests and the offline report check).
system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

lab: setup
	$(RUNBOOK) lab status >/dev/null 2>&1 || $(RUNBOOK) lab start >/dev/null

demo: setup
	@bash scripts/demo.sh

test: setup
	$(PY) -m pytest -q -ra

test-fast: setup
	$(PY) -m pytest -q -ra -m "not slow and not browser"

bench: setup
	$(PY) bench/inventory.py
	$(PY) bench/cli.py
	$(PY) bench/wave.py

# vCenter's maximum (45,000 VMs, 2,500 hosts): the lab alone takes minutes and about 2 GB; not in make bench
bench-scale: setup
	$(PY) bench/scale.py

clean:
	-$(RUNBOOK) lab stop
	rm -rf $(VENV) build *.egg-info
