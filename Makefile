# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
KERNELS_STAMP := $(VENV)/.kernels-stamp
PYX    := $(wildcard src/kernels/*.pyx src/kernels/*.pxd)
DEMO_CUSTOMERS ?= 2000
DATA_DIR ?= data/demo
HOST ?= 127.0.0.1
PORT ?= 8080
SHARDS ?= 2

.PHONY: setup run test bench kernels browser debs clean

setup: $(STAMP) $(KERNELS_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml setup.py
	$(PY) -m pip install -q "Cython>=3.0" "setuptools>=69" wheel "numpy>=2.0"
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

# Rebuild the Cython kernels in place whenever a .pyx/.pxd changes.
$(KERNELS_STAMP): $(STAMP) $(PYX)
	$(PY) setup.py -q build_ext --inplace
	touch $(KERNELS_STAMP)

kernels: $(KERNELS_STAMP)

# Debian packages the tests use as real peers: chromium (Playwright drives it; no browser download),
# postgresql (the system of record the importer streams from; tests run initdb in a temp dir),
# mosquitto (the MQTT broker meter alarms arrive through). Installed only when missing.
DEB_NEEDS := chromium:chromium postgresql:/usr/lib/postgresql mosquitto:mosquitto
browser debs:
	@missing=""; for pair in $(DEB_NEEDS); do pkg=$${pair%%:*}; probe=$${pair#*:}; \
	  if [ -e "$$probe" ] || command -v "$$probe" >/dev/null 2>&1 || [ -x /usr/sbin/$$probe ]; then :; \
	  else missing="$$missing $$pkg"; fi; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages for the tests:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	  || echo "warning: could not install$$missing; tests that need them will be skipped"; fi

run: setup
	$(VENV)/bin/contextgrid serve --demo $(DEMO_CUSTOMERS) --data-dir $(DATA_DIR) \
	  --host $(HOST) --port $(PORT) --shards $(SHARDS)

test: setup debs
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python -m pytest -q bench/ -p no:cacheprovider --benchmark-columns=min,mean,ops -s $(PYTEST_ARGS)

clean:
	rm -rf build src/*.egg-info src/kernels/*.c src/kernels/*.so $(KERNELS_STAMP)
