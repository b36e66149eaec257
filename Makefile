# Jobwire developer commands. `make serve` and `make test` are the README's two commands.
SHELL := /bin/bash
TOOLS := .tools
# uv lives in its own venv; $(TOOLS)/bin holds protoc plugins (see GEN_PATH) and the
# gRPC command-line tools of `make tools`.
UV := $(TOOLS)/uv/bin/uv
UV_VERSION := 0.13.8
# grpcurl, ghz and grpc-health-probe: the README shows them, tests/test_tooling.py runs them.
GRPCURL_VERSION := v1.9.4
GHZ_VERSION := v0.120.0
GRPC_HEALTH_PROBE_VERSION := v0.4.63
# Shopify's toxiproxy, the fault proxy of tests/test_lost_reply.py (its server command is
# installed as .tools/toxiproxy/server).
TOXIPROXY_VERSION := v2.5.0
GRPC_TOOLS_STAMP := $(TOOLS)/grpc-tools-$(GRPCURL_VERSION)-$(GHZ_VERSION)-$(GRPC_HEALTH_PROBE_VERSION)-$(TOXIPROXY_VERSION).stamp

.PHONY: setup tools serve test test-python lint generate check-generated bench clean

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

$(GRPC_TOOLS_STAMP):
	mkdir -p $(TOOLS)/bin
	GOBIN=$(CURDIR)/$(TOOLS)/bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	GOBIN=$(CURDIR)/$(TOOLS)/bin go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
	GOBIN=$(CURDIR)/$(TOOLS)/bin go install github.com/grpc-ecosystem/grpc-health-probe@$(GRPC_HEALTH_PROBE_VERSION)
	GOBIN=$(CURDIR)/$(TOOLS)/toxiproxy go install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	touch $@

tools: $(GRPC_TOOLS_STAMP)

serve: setup
	$(UV) run jobwire serve

# Client suites first, so the closing line is pytest's summary of the whole run.
test: setup tools $(CLIENT_SETUP)
	@for t in $(CLIENT_TEST); do $(MAKE) --no-print-directory $$t || exit 1; done
	$(UV) run pytest

# The Python side alone, for quick work: broker and SDK tests, no client setup or suites,
# and none of the tests that need another language's toolchain (marked cross_language).
test-python: setup
	$(UV) run pytest -m "not cross_language"

lint: setup $(CLIENT_SETUP)
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy broker clients/python/src examples
	$(UV) run lint-imports
	$(UV) run buf lint
	$(UV) run buf breaking --against '.git#branch=main'
	@for t in $(CLIENT_LINT); do $(MAKE) --no-print-directory $$t || exit 1; done

generate: setup $(CLIENT_SETUP)
	$(UV) run buf generate
	cp protos/jobwire/v1/service_config.json clients/python/src/jobwire/service_config.json

# Fails when a checked-in stub differs from what `make generate` writes.
check-generated: setup $(CLIENT_SETUP)
	$(UV) run python tools/check_generated.py

bench: setup
	$(UV) run python bench/core.py

clean:
	rm -rf .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
