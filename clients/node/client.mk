# TypeScript client (clients/node): `npm ci` from package-lock.json, `tsc --strict`, and
# `node --test` on the compiled tests, which start their own broker (JOBWIRE_PYTHON).
# ts-proto's plugin (protoc-gen-ts_proto) comes from node_modules/.bin for `buf generate`.
NODE_CLIENT_DIR := clients/node
NODE_CLIENT_STAMP := $(NODE_CLIENT_DIR)/node_modules/.package-lock.json
GEN_PATH := $(GEN_PATH):$(CURDIR)/clients/node/node_modules/.bin
CLIENT_SETUP += setup-node
CLIENT_LINT += lint-node
CLIENT_TEST += test-node

.PHONY: setup-node lint-node test-node

# npm ci rewrites node_modules/.package-lock.json, so it reruns only when the lock changes.
$(NODE_CLIENT_STAMP): $(NODE_CLIENT_DIR)/package-lock.json $(NODE_CLIENT_DIR)/package.json
	cd $(NODE_CLIENT_DIR) && npm ci --no-audit --no-fund --loglevel=error

# The build is `npm run build`: tsc, then the service config shipped with the protos
# copied into dist/src, where src/service-config.ts reads it at run time.
setup-node: $(NODE_CLIENT_STAMP)
	cd $(NODE_CLIENT_DIR) && npm run --silent build

lint-node: $(NODE_CLIENT_STAMP)
	cd $(NODE_CLIENT_DIR) && node_modules/.bin/tsc -p tsconfig.json --noEmit --strict --incremental false

test-node: setup setup-node
	cd $(NODE_CLIENT_DIR) && JOBWIRE_PYTHON="$${JOBWIRE_PYTHON:-$(CURDIR)/.venv/bin/python}" node --test dist/test/*.test.js
