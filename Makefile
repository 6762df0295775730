# Everything the project needs is installed by these rules: a virtual
# environment in .venv, buf from the npm registry in .tools, generated code
# under clients/python/src/webhooks; Debian's Go packages for the Go client's example; and the
# TypeScript client's packages (from its lock file) in clients/typescript/node_modules.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GEN := clients/python/src/webhooks
PROTOS := $(wildcard protos/webhooks/v1/*.proto)
# The version the TypeScript client's lock file pins, so lint and generation run the same buf.
BUF_VERSION := $(shell sed -n 's/.*"@bufbuild\/buf": "\(.*\)".*/\1/p' clients/typescript/package.json)
BUF := .tools/node_modules/.bin/buf
TS := clients/typescript
DESCRIPTORS := build/webhooks.binpb
# Where `make run` listens: gRPC, and HTTP (REST API, web console, metrics and probes).
LISTEN ?= 127.0.0.1:50051
HTTP_LISTEN ?= 127.0.0.1:8080
# Opens loopback to the request-forgery guard, for the walk-through's local receiver.
ALLOW_NETWORK ?= 127.0.0.0/8
# The Go client: clients/go is the first GOPATH entry, the generated package sits under it at its
# go_package path, and Debian's Go libraries (/usr/share/gocode) supply grpc and protobuf.
GO_DIR := clients/go
GO_GEN := $(GO_DIR)/src/webhooks.internal/gen/go/webhooks/v1
GO_EXAMPLE := $(GO_DIR)/bin/webhooks-example
GO_ENV := GO111MODULE=off GOPATH="$(abspath $(GO_DIR)):/usr/share/gocode" CGO_ENABLED=0 GOFLAGS=

.PHONY: setup run test test-typescript lint breaking proto descriptors go go-tools bench clean postgres chromium

setup: $(VENV)/.installed

run: setup
	WEBHOOKS_ALLOW_NETWORK="$(ALLOW_NETWORK)" $(BIN)/webhooks serve --listen $(LISTEN) --http-listen $(HTTP_LISTEN)

test: setup lint postgres chromium go
	$(BIN)/python -m pytest
	$(MAKE) test-typescript

# The TypeScript client's suite, against a real server it starts from .venv.
test-typescript: setup $(TS)/node_modules/.installed
	cd $(TS) && WEBHOOKS_BIN="$(abspath $(BIN)/webhooks)" npm test

# The suite runs on SQLite and on throwaway PostgreSQL clusters it starts itself.
postgres:
	scripts/ensure-postgres

# The console's browser tests drive Debian's Chromium with Playwright.
chromium:
	scripts/ensure-chromium

lint: setup $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BUF) lint
	$(MAKE) breaking

# A change to protos/ that breaks callers fails here (buf.yaml says which rules apply).
breaking: $(BUF)
	scripts/check-breaking $(BUF)

proto: $(VENV)/.tools
	rm -rf $(GEN)
	mkdir -p $(GEN)/v1
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=clients/python/src --mypy_out=clients/python/src \
		--grpc_python_out=clients/python/src --mypy_grpc_out=clients/python/src \
		$(PROTOS)
	touch $(GEN)/__init__.py $(GEN)/v1/__init__.py $(GEN)/py.typed

# One descriptor set, with imports and comments, for tools that do not use server reflection.
descriptors: $(BUF)
	mkdir -p $(dir $(DESCRIPTORS))
	$(BUF) build -o $(DESCRIPTORS)

# Generates the Go client and builds its example, which tests/test_go_client.py runs against the server.
go: go-tools $(GO_EXAMPLE)

go-tools:
	scripts/ensure-go

$(GO_GEN)/webhook_service_grpc.pb.go: $(PROTOS) | go-tools
	rm -rf $(GO_DIR)/src
	mkdir -p $(GO_DIR)/src
	protoc -I protos --go_out=$(GO_DIR)/src --go-grpc_out=$(GO_DIR)/src $(PROTOS)

$(GO_EXAMPLE): $(GO_GEN)/webhook_service_grpc.pb.go $(wildcard $(GO_DIR)/example/*.go) | go-tools
	@test -z "$$(gofmt -l $(GO_DIR)/example)" || { gofmt -d $(GO_DIR)/example; exit 1; }
	cd $(GO_DIR)/example && $(GO_ENV) go vet . && $(GO_ENV) go build -o $(abspath $@) .

bench: setup postgres
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .tools $(GEN) $(GO_DIR)/src $(GO_DIR)/bin .pytest_cache .mypy_cache .ruff_cache \
		$(DESCRIPTORS) $(TS)/node_modules $(TS)/src/gen $(TS)/dist

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The code generators come first: the client package is built from their output.
$(VENV)/.tools: $(VENV)/bin/python
	$(BIN)/pip install --quiet "grpcio-tools>=1.66" "mypy-protobuf>=3.6"
	touch $@

$(GEN)/v1/__init__.py: $(PROTOS) $(VENV)/.tools
	$(MAKE) proto

# The packages are installed in editable mode: code generated again later (`make proto`) is used as it is,
# without installing anything again, so the generated code is needed first but is no reason to reinstall.
$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml | $(GEN)/v1/__init__.py
	$(BIN)/pip install --quiet -e clients/python -e '.[dev]'
	touch $@

$(TS)/node_modules/.installed: $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund
	touch $@

$(BUF):
	npm install --silent --no-save --no-package-lock --prefix .tools @bufbuild/buf@$(BUF_VERSION)
