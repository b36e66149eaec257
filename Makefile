# Jobwire developer commands. `make serve` and `make test` are the README's two commands.
SHELL := /bin/bash
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.8

.PHONY: setup serve test lint generate check-generated bench clean

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

setup: $(UV)
	$(UV) sync --locked

serve: setup
	$(UV) run jobwire serve

test: setup
	$(UV) run pytest

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy broker clients/python/src
	$(UV) run buf lint
	$(UV) run buf breaking --against '.git#branch=main'

generate: setup
	$(UV) run buf generate

# Fails when a checked-in stub differs from what `make generate` writes.
check-generated: setup
	$(UV) run python tools/check_generated.py

bench: setup
	$(UV) run python bench/core.py

clean:
	rm -rf .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
