# Two entry points: `make run` (the demo) and `make test` (lint, types, layering, the suite).
# Both install what they need from this repository's own files.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Debian packages the suite and the demo need (installed when missing, as root).
APT_PACKAGES ?= ca-certificates
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: the suite mostly waits on simulated machines, so
# three workers keep two cores busy (tests sharing a fleet stay on one worker).
TEST_WORKERS ?= 3

.PHONY: all run test lint format typecheck layers unit integration testbin bench system-deps clean

all: test

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@# Every kube-apiserver and Cluster API manager watches its certificate files with
	@# inotify; the suite's parallel workers run dozens at once, past the default 128.
	@if [ "$$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)" -lt 1024 ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		echo "raising fs.inotify.max_user_instances to 1024"; \
		echo 1024 | $$SUDO tee /proc/sys/fs/inotify/max_user_instances >/dev/null || \
			echo "could not raise fs.inotify.max_user_instances: run make test with TEST_WORKERS=1"; \
	fi
	@command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || \
		{ echo "the Go toolchain (>= 1.24) is needed to build kube-apiserver/kubectl/etcd once; install it from https://go.dev/dl"; exit 1; }

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools -c constraints.txt || true
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# Build (once, cached under ~/.cache/kcp/testbin) or find the test binaries.
testbin: system-deps $(STAMP)
	PATH="$$PATH:/usr/local/go/bin" $(PY) -m kcp.testing.binaries >/dev/null

lint: $(STAMP)
	$(VENV)/bin/ruff check kcp tests hack/tilt
	$(VENV)/bin/ruff format --check kcp tests hack/tilt

format: $(STAMP)
	$(VENV)/bin/ruff format kcp tests
	$(VENV)/bin/ruff check --fix kcp tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict kcp

# The layering contract of DESIGN.md, machine-checked (import-linter, see pyproject.toml).
layers: $(STAMP)
	$(VENV)/bin/lint-imports

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

integration: testbin
	$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

test: lint typecheck layers testbin
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --durations=25 $(PYTEST_ARGS)

run: testbin
	$(VENV)/bin/kcp dev

bench: testbin
	$(VENV)/bin/kcp bench all --json _out/bench.json --plot _out/bench.png

clean:
	rm -rf $(VENV) _out .mypy_cache .ruff_cache .pytest_cache
