# The one place commands live. `make run` serves the product; `make test` proves it.
SHELL := /bin/bash
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Re-install only when the dependency list changes.
STAMP := .venv/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install run test services chromium lint bench worker migrate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@rm -f .venv/.installed-*; touch $@

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

lint: install  ## ruff (lint + format) everywhere, mypy on every package
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	$(PY) -m mypy scarcity models worker app

chromium:  ## Debian's chromium for the dashboard's browser test (installed when missing)
	@scripts/ensure-debian-package.sh /usr/bin/chromium chromium

test: install services chromium lint  ## the whole suite; non-zero on any failure or when no test ran
	$(PY) -m pytest

bench: install services  ## the benchmarks (bench/); the service one drives load with Debian's wrk
	@scripts/ensure-debian-package.sh /usr/bin/wrk wrk
	$(PY) -m bench

clean:
	rm -rf .venv scarcity.db scarcity.db-wal scarcity.db-shm logs .pytest_cache
