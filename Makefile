# Jobwire developer commands. `make serve` and `make test` are the README's two commands.
SHELL := /bin/bash
TOOLS := .tools
# uv lives in its own venv; $(TOOLS)/bin holds only protoc plugins (see GEN_PATH).
UV := $(TOOLS)/uv/bin/uv
UV_VERSION := 0.13.8

.PHONY: setup serve test lint generate check-generated bench clean

# Each client language adds its targets in clients/<lang>/client.mk and appends them to
# CLIENT_SETUP, CLIENT_LINT and CLIENT_TEST (and any plugin folders to GEN_PATH).
CLIENT_SETUP :=
CLIENT_LINT :=
CLIENT_TEST :=
GEN_PATH := $(CURDIR)/$(TOOLS)/bin
-include clients/*/client.mk
export PATH := $(GEN_PATH):$(PATH)

$(UV):
	python3 -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION)

setup: $(UV)
	$(UV) sync --locked

serve: setup
	$(UV) run jobwire serve

# Client suites first, so the closing line is pytest's summary of the whole run.
test: setup $(CLIENT_SETUP)
	@for t in $(CLIENT_TEST); do $(MAKE) --no-print-directory $$t || exit 1; done
	$(UV) run pytest

lint: setup $(CLIENT_SETUP)
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy broker clients/python/src
	$(UV) run buf lint
	$(UV) run buf breaking --against '.git#branch=main'
	@for t in $(CLIENT_LINT); do $(MAKE) --no-print-directory $$t || exit 1; done

generate: setup $(CLIENT_SETUP)
	$(UV) run buf generate

# Fails when a checked-in stub differs from what `make generate` writes.
check-generated: setup $(CLIENT_SETUP)
	$(UV) run python tools/check_generated.py

bench: setup
	$(UV) run python bench/core.py

clean:
	rm -rf .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
