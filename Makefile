# The two commands. Both install what is missing (Debian packages, a venv with
# the locked dependencies) and are quiet when nothing is.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEB_PACKAGES := iproute2 nftables iperf3 etcd-server etcd-client dnsmasq-base \
	iputils-ping udhcpc procps
DEB_BINARIES := ip nft iperf3 etcd etcdctl dnsmasq ping udhcpc pkill

.PHONY: demo test deps debs venv lint lock clean

demo: deps
	$(VENV)/bin/spanwire demo

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: deps
	$(VENV)/bin/ruff check .

deps: debs venv

# Install the Debian packages only when one of their binaries is missing.
debs:
	@missing=""; for b in $(DEB_BINARIES); do command -v $$b >/dev/null 2>&1 || \
	  [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES) >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@echo "creating the venv in $(VENV)"
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	@log=$$(mktemp); \
	{ $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q -r requirements.lock && \
	  $(PY) -m pip install -q --no-deps -e . ; } >"$$log" 2>&1 \
	  || { cat "$$log"; rm -f "$$log"; exit 1; }; rm -f "$$log"
	@touch $(STAMP)

# Regenerate the lock file from pyproject.toml (run by developers, not by CI).
lock:
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache
