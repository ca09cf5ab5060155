# DonorHub: `make run` serves the app with demo data; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
export FLASK_APP := wsgi
CHROMIUM := /usr/bin/chromium

.PHONY: run test test-slow lint install install-test browser db clean help fuzz bench bench-full profile tools bench-tools bench-load

help:
	@echo "make run    serve DonorHub with demo data on http://127.0.0.1:$(PORT)"
	@echo "make test   run the whole test suite (SQLite, and PostgreSQL if TEST_DATABASE_URL),"
	@echo "            on PYTEST_WORKERS processes (default auto: one per core; 0: one process)"
	@echo "make lint   ruff (lint and format), bandit, semgrep and mypy"
	@echo "make typecheck   mypy"
	@echo "make test-slow   the slow tier (wapiti3, every-page axe sweep, more fault runs)"
	@echo "make test-stressed   the timing-sensitive tests under stress --cpu 4 (part of make test)"
	@echo "make bench        every benchmark ratio in one table, quick sizes (under 5 minutes)"
	@echo "make bench-full   the same at the goals' sizes (docs/benchmarks.md)"
	@echo "make profile PAGE=/sponsor   py-spy flame graph and top functions of a page under wrk"
	@echo "make bench-load   the wrk load benchmark (docs/benchmarks.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs are pinned by constraints.txt, so every machine gets the same versions.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

db: install
	$(BIN)/flask db upgrade

# Without STRIPE_SECRET_KEY, payments go to the local Stripe simulator (docs/stripe-simulator.md),
# which signs its webhooks with the app's development secret and posts them to this server.
STRIPE_SIMULATOR_PORT ?= 12111
STRIPE_WEBHOOK_SECRET ?= whsec_development_only
run: db
	$(BIN)/flask demo seed --if-empty
	@echo "DonorHub is starting on http://127.0.0.1:$(PORT) (Ctrl-C stops the web server, the jobs process and the Stripe simulator)"
	@export STRIPE_WEBHOOK_SECRET=$(STRIPE_WEBHOOK_SECRET) STRIPE_SIMULATOR_PORT=$(STRIPE_SIMULATOR_PORT) \
	  PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://127.0.0.1:$(PORT)}; \
	  if [ -z "$$STRIPE_SECRET_KEY" ]; then \
	    export STRIPE_API_BASE=http://127.0.0.1:$(STRIPE_SIMULATOR_PORT) \
	      CSP_FORM_ACTION=https://checkout.stripe.com,http://127.0.0.1:$(STRIPE_SIMULATOR_PORT); \
	    $(BIN)/python -m stripe_simulator --port $(STRIPE_SIMULATOR_PORT) \
	      --webhook-url http://127.0.0.1:$(PORT)/stripe/webhook \
	      --webhook-secret $(STRIPE_WEBHOOK_SECRET) --db instance/stripe-simulator.sqlite3 & sim_pid=$$!; \
	  fi; \
	  $(BIN)/flask jobs run & jobs_pid=$$!; \
	  trap 'kill $$jobs_pid $$sim_pid 2>/dev/null; wait $$jobs_pid $$sim_pid 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/flask run --host 127.0.0.1 --port $(PORT)

# Debian's Chromium for the browser tests; Playwright cannot download a browser here.
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "!!! chromium could not be installed: the browser tests will be SKIPPED !!!"; \
	  else \
	    echo "!!! $(CHROMIUM) is missing and this is not root: the browser tests will be SKIPPED !!!"; \
	  fi; \
	fi
	@$(MAKE) --no-print-directory node_modules/.installed

# axe-core (test-only, from the npm registry) for the accessibility checks of the browser tests.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null)
	npm ci --silent --no-audit --no-fund
	touch $@

# Security tools in virtualenvs of their own: semgrep and wapiti3 pin dependencies that
# conflict with the app's and with each other's. Exact versions: .semgrep/tools-requirements.txt
# and tests/slow/dast-requirements.txt (pip freeze of each).
TOOLS_VENV := .venv-tools
DAST_VENV := .venv-dast
SEMGREP_VERSION := 1.185.0
WAPITI_VERSION := 3.2.3

$(TOOLS_VENV)/.installed: .semgrep/tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet -r .semgrep/tools-requirements.txt
	$(TOOLS_VENV)/bin/semgrep --version | grep -qx '$(SEMGREP_VERSION)'
	touch $@

$(DAST_VENV)/.installed: tests/slow/dast-requirements.txt
	$(PYTHON) -m venv $(DAST_VENV)
	$(DAST_VENV)/bin/pip install --quiet -r tests/slow/dast-requirements.txt
	$(DAST_VENV)/bin/wapiti --version 2>/dev/null | grep -q '$(WAPITI_VERSION)'
	touch $@

tools: $(TOOLS_VENV)/.installed $(DAST_VENV)/.installed

# semgrep: the project's own rules only (registry rules cannot be fetched here and
# `--config p/...` hangs), so always a local file, no metrics, no version check, and a timeout.
SEMGREP := timeout 300 $(TOOLS_VENV)/bin/semgrep scan --experimental --metrics=off \
  --disable-version-check --no-git-ignore --quiet --error --config .semgrep/donorhub.yml

lint: install-test $(TOOLS_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit --quiet --severity-level medium --confidence-level medium -r donorhub stripe_simulator config.py wsgi.py
	$(SEMGREP) donorhub stripe_simulator config.py wsgi.py templates
	$(BIN)/mypy

# mypy reads its settings (files, exclusions, strictness) from [tool.mypy] in pyproject.toml.
.PHONY: typecheck
typecheck: install-test
	$(BIN)/mypy

# The main run spreads the tests over PYTEST_WORKERS processes (pytest-xdist; `auto` is one per
# core, PYTEST_WORKERS=0 runs them all in one process). Each worker has databases of its own
# (tests/fixtures/database.py); --dist loadgroup keeps each xdist_group on one worker
# (tests/conftest.py XDIST_GROUPS: the tests that start whole stacks of processes).
PYTEST_WORKERS ?= auto
# Branch coverage of the main run ([tool.coverage] in pyproject.toml; html in reports/coverage/).
COVERAGE_ARGS ?= --cov --cov-report=term:skip-covered --cov-report=html:reports/coverage
test: install-test browser bench-tools stack-tools lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow" $(COVERAGE_ARGS) \
	  $(addprefix --ignore=,$(STRESSED_TESTS))

test-slow: install-test browser bench-tools tools
	$(BIN)/pytest -m slow

# wrk (Debian's package) for the benchmarks (bench/), their smoke tests and the profiles; and
# py-spy (PyPI, pinned in constraints.txt) into the venv for the profiles (bench/profile.py).
bench-tools: $(VENV)/.installed-bench
$(VENV)/.installed-bench: $(VENV)/.installed constraints.txt
	@$(BIN)/pip install --quiet -c constraints.txt py-spy && touch $@ \
	  || echo "!!! py-spy could not be installed: make profile will not run !!!"
bench-tools:
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's wrk for the load benchmark..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
	      || echo "!!! wrk could not be installed: the load smoke test will be SKIPPED !!!"; \
	  else \
	    echo "!!! wrk is missing and this is not root: the load smoke test will be SKIPPED !!!"; \
	  fi; \
	fi

# Debian's nginx for the production stack test (tests/system/test_production_stack.py);
# RUNLEVEL=1: the package must not start the machine's own nginx, the test runs a private one.
.PHONY: stack-tools
stack-tools:
	@if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's nginx-light for the production stack test..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq nginx-light openssl >/dev/null) \
	      || echo "!!! nginx could not be installed: the production stack test will be SKIPPED !!!"; \
	  else \
	    echo "!!! nginx is missing and this is not root: the production stack test will be SKIPPED !!!"; \
	  fi; \
	fi

# The timing-sensitive tests (processes killed at a point, races, waits for a process, a
# webhook or a delivery) run under CPU contention: `stress --cpu 4` beside the pytest run, for
# as long as it lasts, on SQLite and (with TEST_DATABASE_URL) PostgreSQL. `make test` runs
# them here instead of in its main run, serially: they measure waits and races, which other
# tests running beside them on the same cores would distort. Kill points: docs/operations.md
# "Testing".
STRESSED_TESTS := tests/faults tests/feed/test_atomicity.py tests/jobs/test_jobs.py \
  tests/mail/test_sender.py tests/payments/test_faults.py tests/payments/test_simulator.py \
  tests/payments/test_webhooks.py tests/sponsorship/test_cap.py \
  tests/security/test_gunicorn_limits.py tests/donations/test_double_clicks.py \
  tests/donations/test_plan_outcomes.py tests/donations/test_plan_saved_errors.py \
  tests/sponsorship/test_cancel_race.py tests/sponsorship/test_holds_per_account.py \
  tests/accounts/test_second_factor.py tests/payments/test_refund_intents.py
STRESS_CPUS ?= 4
STRESS_LIMIT_SECONDS ?= 1800
.PHONY: test-stressed stress-tools
test: test-stressed

stress-tools:
	@if ! command -v stress >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's stress for the timing-sensitive tests..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress >/dev/null) \
	      || echo "!!! stress could not be installed: the timing-sensitive tests will run WITHOUT load !!!"; \
	  else \
	    echo "!!! stress is missing and this is not root: the timing-sensitive tests will run WITHOUT load !!!"; \
	  fi; \
	fi

# stress runs in a session of its own, so that all of its workers stop with it when pytest
# ends (--timeout stops them anyway should this shell die first).
test-stressed: install-test stress-tools
	@if command -v stress >/dev/null; then \
	  setsid stress --cpu $(STRESS_CPUS) --timeout $(STRESS_LIMIT_SECONDS) >/dev/null 2>&1 & stress_pid=$$!; \
	  trap 'kill -TERM -- -$$stress_pid 2>/dev/null; wait $$stress_pid 2>/dev/null' EXIT; \
	  echo "Timing-sensitive tests under stress --cpu $(STRESS_CPUS) (pid $$stress_pid)"; \
	else \
	  echo "!!! stress is missing: the timing-sensitive tests run WITHOUT load !!!"; \
	fi; \
	$(BIN)/pytest -m "not slow" $(STRESSED_TESTS)

bench-load: install bench-tools
	$(BIN)/python bench/load.py

# Every benchmark's ratios in one table, with goals and pass/fail, also in reports/bench.json
# (bench/run.py; BENCH_ARGS="--only overhead webhooks" for some). Quick: under 5 minutes.
BENCH_ARGS ?=
bench: install bench-tools
	$(BIN)/python bench/run.py --quick $(BENCH_ARGS)

bench-full: install bench-tools
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# py-spy on a gunicorn worker while wrk loads PAGE (a path, `campaign`, `child` or `webhook`):
# reports/profile-<name>.svg (flame graph) and .txt (top functions). Needs ptrace (root).
PAGE ?= /
PROFILE_SECONDS ?= 20
profile: install bench-tools
	$(BIN)/python bench/profile.py $(PAGE) --seconds $(PROFILE_SECONDS)

# Coverage-guided fuzzing of the feed parser and of the PII guard's scan_text (atheris);
# FUZZ_SECONDS=1200 FUZZ_SCAN_SECONDS=1200 for the slow tier.
FUZZ_SECONDS ?= 60
FUZZ_SCAN_SECONDS ?= 30
fuzz: install-test
	$(BIN)/pip install --quiet -c constraints.txt atheris
	mkdir -p /tmp/donorhub-fuzz-corpus /tmp/donorhub-scan-fuzz-corpus
	$(BIN)/python tests/fuzz/fuzz_feed_parser.py /tmp/donorhub-fuzz-corpus tests/fuzz/corpus \
	  -max_total_time=$(FUZZ_SECONDS) -timeout=1 -rss_limit_mb=1024
	$(BIN)/python tests/fuzz/fuzz_guard_scan.py /tmp/donorhub-scan-fuzz-corpus \
	  tests/fuzz/scan_corpus -max_total_time=$(FUZZ_SCAN_SECONDS) -timeout=2 -rss_limit_mb=1024 \
	  -artifact_prefix=/tmp/donorhub-scan-crash-

clean:
	rm -rf $(VENV) $(TOOLS_VENV) $(DAST_VENV) node_modules .pytest_cache .ruff_cache reports
