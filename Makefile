# fleetops.health: the two commands a newcomer needs are `make sweep` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
COLLECTIONS := $(CACHE)/collections
INSTALLED := $(COLLECTIONS)/ansible_collections/fleetops/health
N ?= 2
REPORT_DIR ?= $(CURDIR)/fleet-report
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/$(COLLECTIONS)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Every file that goes into the built collection; the install re-runs only when one changes.
COLLECTION_SOURCES := $(shell git ls-files -co --exclude-standard -- galaxy.yml meta plugins roles playbooks extensions docs tests changelogs README.md 2>/dev/null)

.PHONY: sweep test setup test-setup install vendor system-deps unit sanity newest lint molecule e2e lab-up lab-down lab-image bench clean

## The main job: a fleet sweep, against localhost unless INVENTORY is given.
sweep: setup
	@if [ -f playbooks/sweep.yml ]; then \
	  $(BIN)/ansible-playbook $(if $(INVENTORY),-i $(INVENTORY)) fleetops.health.sweep -e fleet_report_dir=$(REPORT_DIR); \
	else \
	  echo "fleetops.health is installed in $(INSTALLED)."; \
	  echo "The fleet sweep (playbooks/sweep.yml) arrives with the host_resources module; nothing to run yet."; \
	fi

## Every test layer, each with a pass/fail line, then a summary. Fails if any layer fails.
test: test-setup
	@tests/tooling/run_layers.sh unit sanity newest lint molecule e2e

setup: $(VENV)/.controller-stamp install

test-setup: setup $(VENV)/.test-stamp vendor system-deps

$(VENV)/.controller-stamp: requirements/controller.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/controller.txt
	touch $@

$(VENV)/.test-stamp: requirements/test.txt requirements/controller.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/test.txt
	touch $@

## Build the collection tarball from the working tree and install it, as a user would.
install: $(INSTALLED)/.stamp

$(INSTALLED)/.stamp: $(VENV)/.controller-stamp $(COLLECTION_SOURCES)
	@mkdir -p $(CACHE)/dist
	@$(BIN)/ansible-galaxy collection build --force --output-path $(CACHE)/dist >/dev/null
	@$(BIN)/ansible-galaxy collection install --force -p $(COLLECTIONS) $(CACHE)/dist/fleetops-health-$$(sed -n 's/^version: //p' galaxy.yml).tar.gz >/dev/null
	@touch $@
	@echo "installed fleetops.health into $(INSTALLED)"

vendor: $(COLLECTIONS)/.vendor-stamp

$(COLLECTIONS)/.vendor-stamp: requirements/vendor-collections.txt $(VENV)/.controller-stamp
	$(BIN)/python tests/tooling/vendor_collections.py requirements/vendor-collections.txt $(CACHE)/wheels $(COLLECTIONS)
	touch $@

## Debian packages the lab and the tests use (root on Debian 12).
system-deps:
	@tests/tooling/system_deps.sh

unit: test-setup
	@tests/tooling/run_layers.sh unit

sanity: test-setup
	@tests/tooling/run_layers.sh sanity

## Unit tests and sanity again on the newest ansible-core (Python 3.12).
newest: test-setup
	@tests/tooling/run_layers.sh newest

lint: test-setup
	@tests/tooling/run_layers.sh lint

## One scenario: make molecule ROLE=agent SCENARIO=default
molecule: test-setup
	@tests/tooling/run_layers.sh molecule

## One test: make e2e K=lab_proof
e2e: test-setup
	@tests/tooling/run_layers.sh e2e

lab-image: test-setup
	$(BIN)/python tests/lab/lab.py image

lab-up: test-setup
	$(BIN)/python tests/lab/lab.py up -n $(N)

lab-down:
	$(BIN)/python tests/lab/lab.py down

bench: test-setup
	@for script in bench/*/run.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean: lab-down
	rm -rf $(CACHE) .venv-newest tests/output bench/output
