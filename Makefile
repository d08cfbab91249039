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

# fuzz-short gives each fuzz target a count of executions (about 10 s each
# on an idle 2-core machine), not a duration: with a duration, Go 1.26's
# fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when -fuzztime ends while a worker is busy (golang/go#75804,
# fixed in Go 1.27); a count has no deadline to race. FUZZSCALE multiplies
# every count (FUZZSCALE=10 fuzzes ten times as long). A fuzz test takes one
# package and one target per run; minimizing is cut short, since a failing
# input is written to testdata/fuzz either way.
FUZZSCALE ?= 1
FUZZ    = $(GO) test -run '^$$' -fuzzminimizetime 2s -fuzztime $$(( $(1) * $(FUZZSCALE) ))x -fuzz '^$(2)$$' $(3)

fuzz-short: ## fuzz the RESP reader, the stream scanner and the RDB verifier (about 10 s each)
	$(call FUZZ,150000,FuzzReader,./internal/resp)
	$(call FUZZ,30000,FuzzStreamScanner,./internal/resp)
	$(call FUZZ,250000,FuzzStreamScannerGarbage,./internal/resp)
	$(call FUZZ,400000,FuzzStreamScannerUnmarshal,./internal/resp)
	$(call FUZZ,300000,FuzzTxScanner,./internal/resp)
	$(call FUZZ,150000,FuzzVerifier,./internal/rdb)

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
