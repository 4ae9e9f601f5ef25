# Build and test entry points. `make test` is what CI runs (.ci/run).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO        ?= go
GOBIN_DIR := $(shell $(GO) env GOBIN)
ifeq ($(GOBIN_DIR),)
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
endif
# staticcheck may live in GOPATH/bin, which PATH need not contain.
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(GOBIN_DIR)/staticcheck)
BINARY    ?= p2psip
E2E_TIMEOUT ?= 40m

.PHONY: web-check screenshots all test deps fmt-check vet lint staticcheck unit e2e build bench clean web web-test

all: build

test: deps lint unit e2e
	@echo "==> make test: all stages passed"

deps:
	@echo "==> installing test dependencies"
	./scripts/install-test-deps.sh

fmt-check:
	@echo "==> gofmt -l"
	@files=$$(git ls-files -co --exclude-standard -- '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'); \
	out=""; if [ -n "$$files" ]; then out=$$(gofmt -l $$files); fi; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	@echo "==> go vet ./..."
	$(GO) vet ./...
	@echo "==> go vet -tags e2e ./..."
	$(GO) vet -tags e2e ./...

staticcheck:
	@echo "==> staticcheck ./..."
	$(STATICCHECK) ./...
	@echo "==> staticcheck -tags e2e ./..."
	$(STATICCHECK) -tags e2e ./...

lint: fmt-check vet staticcheck web-check

unit: web-test
	@echo "==> go test -race ./..."
	$(GO) test -race -count=1 ./...

e2e:
	@echo "==> go test -race -tags e2e ./e2e/..."
	$(GO) test -race -count=1 -tags e2e -timeout $(E2E_TIMEOUT) ./e2e/...

build:
	@echo "==> building static $(BINARY)"
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BINARY) ./server

# The softphone: web-src/ built into static/site/ (committed, so go build
# needs no npm). web-test runs the page's pure logic with node's test runner.
web:
	@echo "==> building the softphone into static/site"
	cd web-src && npm ci && npm run build

web-test:
	@echo "==> node --test web-src/test"
	cd web-src && { [ -d node_modules/jssip ] || npm ci; } && node --test test/

# The committed bundle must be what the sources build to (go build embeds it
# without npm): rebuild and compare.
web-check: web
	@echo "==> static/site matches web-src"
	@git diff --exit-code --stat -- static/site || { echo "static/site is stale: run make web and commit it"; exit 1; }

# Benchmarks: Go benchmarks, then the overlay measurement (prints a table).
bench:
	@echo "==> go test -bench ./overlay/"
	$(GO) test -run '^$$' -bench . -benchtime 200x ./overlay/
	@echo "==> go run ./bench/overlay -peers 20,100"
	$(GO) run ./bench/overlay -peers 20,100
	@echo "==> bench/sip/run.sh (p2psip vs Kamailio, ~7 min)"
	bash bench/sip/run.sh

# Screenshots of the softphone (desktop and phone-sized) into docs/screenshots,
# taken by the browser suite.
screenshots:
	P2PSIP_SCREENSHOTS=1 $(GO) test -count=1 -tags e2e -run 'TestBrowser$$|TestBridgeOneNetwork' ./e2e/

clean:
	rm -f $(BINARY)
