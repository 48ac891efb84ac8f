# Two commands do everything on a fresh machine: `make up` (the whole system) and `make test`.
UV ?= uv
NAME ?=

.PHONY: install up down restart status test lint typecheck bench fetch-kafka deploy-tools docs

install:
	$(UV) sync --frozen

up: install
	$(UV) run --frozen callback-infra up --services

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

typecheck: install
	$(UV) run --frozen mypy shared/src services/*/src

test: lint typecheck deploy-tools
	$(UV) run --frozen pytest

bench: install
	$(UV) run --frozen python -m bench $(NAME)

fetch-kafka: install
	$(UV) run --frozen callback-infra fetch

# pinned offline checkers for tests/deploy (helm, compose-check, kubernetes-validate, hadolint)
deploy-tools:
	bash deploy/tools.sh

# regenerate from the code: the settings table in docs/configuration.md, the metrics table in
# docs/operations.md and docs/asyncapi.json (the Kafka topics)
docs: install
	$(UV) run --frozen python -m tests.deploy.reference --write
