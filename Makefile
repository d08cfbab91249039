# Arbor build, test and code-generation targets. `make help` lists them.
GO      ?= go
TOOL    := $(GO) tool -modfile=tools/go.mod
PKGS    := ./...

.PHONY: help build test test-short e2e fuzz-short vet fmt fmt-check lint proto proto-check bench bench-all demo ci

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/arbor
	$(GO) build -o bin/arbor ./cmd/arbor

test: ## run every test (needs redis-server on PATH), with the race detector
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

# E2E_REPORT is where make e2e writes the fault suite's table (markdown).
E2E_REPORT ?= bin/e2e-report.md

e2e: build ## the fault suite over the seed topology (real redis-server, etcd, agents; about 3 min); its table goes to E2E_REPORT
	$(GO) vet -tags e2e ./internal/e2e
	ARBOR_BIN=$(CURDIR)/bin/arbor ARBOR_E2E_REPORT=$(abspath $(E2E_REPORT)) \
		$(GO) test -tags e2e -race -count=1 -v -timeout 20m -run '^TestFaults$$' ./internal/e2e

test-short: ## quick tests
	$(GO) test -short -count=1 $(PKGS)

# FUZZTIME is how long fuzz-short runs each fuzz test. A fuzz test takes
# one package and one target per run; minimizing is cut short, since a
# failing input is written to testdata/fuzz either way.
FUZZTIME ?= 10s
FUZZ    := $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s

fuzz-short: ## fuzz the RESP reader, the stream scanner and the RDB verifier (FUZZTIME each, 10s)
	$(FUZZ) -fuzz '^FuzzReader$$' ./internal/resp
	$(FUZZ) -fuzz '^FuzzStreamScanner$$' ./internal/resp
	$(FUZZ) -fuzz '^FuzzStreamScannerGarbage$$' ./internal/resp
	$(FUZZ) -fuzz '^FuzzStreamScannerUnmarshal$$' ./internal/resp
	$(FUZZ) -fuzz '^FuzzTxScanner$$' ./internal/resp
	$(FUZZ) -fuzz '^FuzzVerifier$$' ./internal/rdb

vet: ## go vet
	$(GO) vet $(PKGS)

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

lint: fmt-check vet ## gofmt check and go vet

proto: ## lint protos and regenerate Go code (buf, local plugins)
	scripts/proto.sh

proto-check: ## regenerate protos and fail on drift
	scripts/check-proto.sh

bench: build ## benchmark relay vs native replication (see README: Benchmarks)
	bin/arbor bench relay --pin

bench-all: build ## run every benchmark and write docs/benchmarks.md with tables and SVG plots
	bin/arbor bench all

demo: build ## run the three-site demo
	bin/arbor demo

ci: lint test ## what CI runs (after installing redis-server)
