# Two commands a newcomer needs: `make demo` and `make test`. Both bootstrap everything from python3.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
KSERVE_VENV := .venv-kserve
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(VENV)
# kfp.Client may write ~/.config/kfp; keep the developer's HOME out of the demo and tests.
PYTEST_ARGS ?=

.PHONY: help venv venv-kserve browser postgres kubectl test e2e lint demo chaos bench compile-check clean up down
help:
	@echo "make demo   - run the main job end to end on the embedded stand-ins"
	@echo "make test   - bootstrap the venvs and run the whole test suite"
	@echo "make lint   - ruff (including the AIR rules)"
	@echo "make bench  - benchmarks under benchmarks/"
	@echo "make chaos  - fault-injection suite (slow)"
	@echo "make e2e    - end-to-end scenarios on real Airflow stacks (every DAG every way, make up; slow)"
	@echo "make up     - stand-ins + a local Airflow with this repo's dags/ and plugins/; make down stops it"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# The stamp makes the venv reusable while the lock file is unchanged.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

$(KSERVE_VENV)/.synced: requirements/kserve.lock | $(UV)
	[ -x $(KSERVE_VENV)/bin/python ] || $(UV) venv --python $(PYTHON) $(KSERVE_VENV)
	VIRTUAL_ENV=$(KSERVE_VENV) $(UV) pip sync --python $(KSERVE_VENV)/bin/python requirements/kserve.lock
	touch $@

venv: $(VENV)/.synced
venv-kserve: $(KSERVE_VENV)/.synced

lint: venv
	$(VENV)/bin/ruff check kfp_bridge dags plugins tests benchmarks

# Headless Chromium for the UI test (Debian packages; installed once, skipped when present).
browser:
	@if [ -f scripts/ensure-chromium.sh ]; then bash scripts/ensure-chromium.sh; fi

# PostgreSQL server binaries for the multi-process Airflow stacks (Debian package; skipped when present).
postgres:
	bash scripts/ensure-postgres.sh

# The real kubectl, driven against the Kubernetes stand-in by the tests (any kubectl on PATH will do).
kubectl:
	bash scripts/ensure-kubectl.sh

test: venv venv-kserve browser postgres kubectl
	$(VENV)/bin/ruff check kfp_bridge dags plugins tests benchmarks
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup --ignore=tests/chaos -m "not e2e" --reruns 1 --reruns-delay 5 --rerun-show-tracebacks --durations=30 $(PYTEST_ARGS)

# End-to-end scenarios too slow for make test's 20-minute budget (about 13 minutes): every DAG in
# dags/ started every way (UI form, REST, CLI, schedule, asset event, approval), make up/down, the
# asset-driven serving stack and the on-call walk through a nested failure.
e2e: venv venv-kserve browser postgres
	$(VENV)/bin/python -m pytest -p no:xdist -m e2e -s $(PYTEST_ARGS)

# Scripted faults against a real scheduler, triggerer and the stand-ins (slow; not part of make test).
chaos: venv venv-kserve postgres
	$(VENV)/bin/python -m pytest -p no:xdist tests/chaos $(PYTEST_ARGS)

# Stand-ins plus a local Airflow (api-server, scheduler, dag-processor, triggerer) on PostgreSQL.
up: venv venv-kserve postgres
	$(PY) -m kfp_bridge.local.devstack up

down:
	@if [ -x $(PY) ]; then $(PY) -m kfp_bridge.local.devstack down; fi

demo: venv venv-kserve
	$(PY) -m kfp_bridge.demo

bench: venv venv-kserve postgres
	$(PY) benchmarks/parse_time.py
	@for script in benchmarks/submit_overhead.py benchmarks/triggerer_scale.py benchmarks/triggerer_airflow.py; do \
		if [ -f $$script ]; then $(PY) $$script || exit 1; fi; done

compile-check: venv
	$(VENV)/bin/kfp-bridge compile --check dags/pipelines/iris.py

clean:
	rm -rf $(VENV) $(KSERVE_VENV) $(TOOLS) .demo
