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

.PHONY: sweep test setup test-setup install vendor system-deps unit sanity newest lint molecule e2e docs lab-up lab-down lab-image bench clean

## The main job: a fleet sweep, against localhost unless INVENTORY is given.
sweep: setup
	$(BIN)/ansible-playbook $(if $(INVENTORY),-i $(INVENTORY)) fleetops.health.sweep -e sweep_report_dir=$(REPORT_DIR)

## Every test layer, each with a pass/fail line, then a summary. Fails if any layer fails.
test: test-setup
	@tests/tooling/run_layers.sh unit sanity newest lint docs molecule e2e

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

## One scenario: make molecule ROLE=schedule SCENARIO=default
molecule: test-setup
	@tests/tooling/run_layers.sh molecule

## One test: make e2e K=lab_proof
e2e: test-setup
	@tests/tooling/run_layers.sh e2e

## The collection's HTML reference (modules, filters, callback, roles), generated with antsibull-docs from the
## plugins' own docs and the roles' argument specs, into $(DOCS_SITE)/html. Offline: intersphinx stays off, so
## links into docs.ansible.com are plain text (sphinx warns "undefined label" for them).
DOCS_SITE ?= $(CURDIR)/$(CACHE)/docsite
docs: setup $(VENV)/.test-stamp
	@rm -rf $(DOCS_SITE) && mkdir -p $(DOCS_SITE)/rst && chmod og-w $(DOCS_SITE)/rst
	@$(BIN)/antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error --sphinx-theme alabaster \
	  --project fleetops.health --title "fleetops.health" --dest-dir $(DOCS_SITE) fleetops.health >/dev/null
	$(BIN)/antsibull-docs --config-file $(DOCS_SITE)/antsibull-docs.cfg collection --use-current --squash-hierarchy \
	  --fail-on-error --dest-dir $(DOCS_SITE)/rst fleetops.health
	$(BIN)/sphinx-build -q -b html -c $(DOCS_SITE) -D extensions=sphinx.ext.autodoc,sphinx_antsibull_ext \
	  $(DOCS_SITE)/rst $(DOCS_SITE)/html
	@echo "collection reference: $(DOCS_SITE)/html/index.html"

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
