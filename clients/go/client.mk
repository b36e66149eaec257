# Go client (clients/go): modules from go.sum, `gofmt -l` + `go vet`, and `go test`,
# whose TestMain starts a real broker (JOBWIRE_PYTHON). The stubs' protoc plugins are
# installed into .tools/bin (on GEN_PATH) at the versions pinned here; keep
# PROTOC_GEN_GO_VERSION equal to google.golang.org/protobuf in clients/go/go.mod.
GO_CLIENT_DIR := clients/go
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GO_PLUGINS_STAMP := $(TOOLS)/go-plugins-$(PROTOC_GEN_GO_VERSION)-$(PROTOC_GEN_GO_GRPC_VERSION).stamp
CLIENT_SETUP += setup-go
CLIENT_LINT += lint-go
CLIENT_TEST += test-go

.PHONY: setup-go lint-go test-go

$(GO_PLUGINS_STAMP):
	mkdir -p $(TOOLS)/bin
	GOBIN=$(CURDIR)/$(TOOLS)/bin go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/$(TOOLS)/bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	touch $@

# go:embed reaches only files inside the module, so the client embeds a copy of the
# service config; `make generate` runs this too, and tools/check_generated.py and
# TestServiceConfigCopyIsFresh fail when the copy is stale.
setup-go: $(GO_PLUGINS_STAMP)
	cp protos/jobwire/v1/service_config.json $(GO_CLIENT_DIR)/jobwire/service_config.json
	cd $(GO_CLIENT_DIR) && go mod download

lint-go:
	@cd $(GO_CLIENT_DIR) && unformatted="$$(gofmt -l .)" && \
		if [ -n "$$unformatted" ]; then echo "gofmt -l: not formatted:"; echo "$$unformatted"; exit 1; fi
	cd $(GO_CLIENT_DIR) && go vet ./...

# -count=1: the suite talks to the Python broker, whose changes Go's test cache cannot see.
test-go: setup
	cd $(GO_CLIENT_DIR) && JOBWIRE_PYTHON="$${JOBWIRE_PYTHON:-$(CURDIR)/.venv/bin/python}" go test -count=1 ./...
