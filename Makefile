# Everything the project needs is installed by these rules: a virtual
# environment in .venv, buf from the npm registry in .tools, generated code
# under clients/python/src/webhooks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GEN := clients/python/src/webhooks
PROTOS := $(wildcard protos/webhooks/v1/*.proto)
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
LISTEN ?= 127.0.0.1:50051
# Opens loopback to the request-forgery guard, for the walk-through's local receiver.
ALLOW_NETWORK ?= 127.0.0.0/8

.PHONY: setup run test lint proto bench clean postgres chromium

setup: $(VENV)/.installed

run: setup
	WEBHOOKS_ALLOW_NETWORK="$(ALLOW_NETWORK)" $(BIN)/webhooks serve --listen $(LISTEN)

test: setup lint postgres chromium
	$(BIN)/python -m pytest

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

proto: $(VENV)/.tools
	rm -rf $(GEN)
	mkdir -p $(GEN)/v1
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=clients/python/src --mypy_out=clients/python/src \
		--grpc_python_out=clients/python/src --mypy_grpc_out=clients/python/src \
		$(PROTOS)
	touch $(GEN)/__init__.py $(GEN)/v1/__init__.py $(GEN)/py.typed

bench: setup postgres
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .tools $(GEN) .pytest_cache .mypy_cache .ruff_cache

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The code generators come first: the client package is built from their output.
$(VENV)/.tools: $(VENV)/bin/python
	$(BIN)/pip install --quiet "grpcio-tools>=1.66" "mypy-protobuf>=3.6"
	touch $@

$(GEN)/v1/__init__.py: $(PROTOS) $(VENV)/.tools
	$(MAKE) proto

$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml $(GEN)/v1/__init__.py
	$(BIN)/pip install --quiet -e clients/python -e '.[dev]'
	touch $@

$(BUF):
	npm install --silent --no-save --no-package-lock --prefix .tools @bufbuild/buf@$(BUF_VERSION)
