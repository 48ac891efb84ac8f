# Two commands do everything on a fresh machine: `make up` (the whole system) and `make test`.
UV ?= uv
NAME ?=
MINUTES ?= 10

.PHONY: install up down restart status test lint typecheck bench fetch-kafka deploy-tools docs \
	console-deps console-build console-test console-link test-unit soak

install:
	$(UV) sync --frozen

up: install console-build
	$(UV) run --frozen callback-infra up --services
	@$(MAKE) --no-print-directory console-link

# the admin console's development sign-in link (a local supervisor of every service): printed
# on the terminal only, never written to a log or a file
console-link:
	@set -a; . ./.run/env; set +a; \
	token=$$($(UV) run --frozen callback-admin-token --sub local-supervisor \
	  --role callback_supervisor --service '*'); \
	url=$$(python3 -c "import json; print(json.load(open('.run/state.json'))['urls']['admin-api'])"); \
	echo "Admin console: $$url/console/#token=$$token"

down:
	$(UV) run --frozen callback-infra down

# one process of the running stack (`make restart SERVICE=exporter`; also kafka, mongodb)
restart:
	$(UV) run --frozen callback-infra restart $(SERVICE)

status:
	$(UV) run --frozen callback-infra status

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

# the fast tier: pure cores and single handlers, no Kafka, no MongoDB, no browser (tests/conftest.py
# `--unit` leaves out every test that uses the `infra` fixture, and the e2e ones)
test-unit: install
	$(UV) run --frozen pytest --unit --ignore=tests/deploy -q

typecheck: install
	$(UV) run --frozen mypy shared/src dev/src $(filter-out services/admin-console/src,$(wildcard services/*/src)) tests bench soak

test: lint typecheck deploy-tools console-test console-build
	$(UV) run --frozen pytest

# the admin console (services/admin-console): npm dependencies from its lockfile, the Vitest
# suite with tsc --noEmit, the static build admin-api serves at /console/
CONSOLE = services/admin-console
console-deps:
	@test -d $(CONSOLE)/node_modules || (cd $(CONSOLE) && npm ci --prefer-offline --no-audit --no-fund)

console-test: console-deps
	cd $(CONSOLE) && npm test

console-build: console-deps
	cd $(CONSOLE) && npm run build && npm run size

bench: install
	$(UV) run --frozen python -m bench $(NAME)

# the whole system under a steady load and a seeded chaos loop for MINUTES, then the invariant
# auditor (SOAK_SEED=<n> replays a run's faults); bench/results/soak.json, exit 1 on a violation
soak: install
	$(UV) run --frozen python -m soak --minutes $(MINUTES)

fetch-kafka: install
	$(UV) run --frozen callback-infra fetch

# pinned offline checkers for tests/deploy (helm, compose-check, kubernetes-validate, hadolint)
deploy-tools:
	bash deploy/tools.sh

# regenerate from the code: the settings table in docs/configuration.md, the metrics table in
# docs/operations.md and docs/asyncapi.json (the Kafka topics)
docs: install
	$(UV) run --frozen python -m tests.deploy.reference --write
