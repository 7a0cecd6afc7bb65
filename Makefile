# stargz-store Makefile. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
OUT ?= out
BIN := $(OUT)/stargz-store
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -trimpath -ldflags "-X main.version=$(VERSION)"
# Packages a test run needs from Debian (idempotent; apt-get update first).
TEST_DEBS := podman runc docker-registry bats fuse3 debootstrap busybox-static jq curl apache2-utils uidmap skopeo iproute2
# What `make demo` needs from Debian.
DEMO_DEBS := podman runc docker-registry fuse3 busybox-static jq curl
# What `make bench` needs from Debian.
BENCH_DEBS := podman runc docker-registry fuse3 debootstrap busybox-static tar
# The Podman 5 (Debian trixie) chroot for the e2e tests; built once, reused by later runs.
P5_BASE ?= /var/tmp/podman5-chroot

.PHONY: help build test test-unit test-fuse test-e2e e2e-deps fuzz vet fmt-check lint tidy-check deps-test bench demo clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-12s %s\n", $$1, $$2}'

build: ## build out/stargz-store
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/stargz-store

deps-test: ## install what the tests need (Debian packages)
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

vet: ## go vet
	$(GO) vet ./...

fmt-check: ## gofmt must have nothing to say
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

lint: ## staticcheck (version pinned by the tool directive in go.mod; checks in staticcheck.conf)
	$(GO) tool staticcheck ./...

tidy-check: ## go.mod and go.sum must be tidy
	$(GO) mod tidy -diff

test-unit: ## unit tests with the race detector (fuzz seed corpora included)
	$(GO) test -race -count=1 ./...

test-fuse: ## FUSE mount tests (need /dev/fuse; fail instead of skipping), also with GOMAXPROCS=1
	# -p 1: one package at a time (mounts); -count 1: never cached; GOMAXPROCS=1 finds FUSE deadlocks
	STARGZ_STORE_REQUIRE_FUSE=1 $(GO) test -race -p 1 -count 1 -timeout 10m -run 'Mount|Posix' ./layerfs/...
	STARGZ_STORE_REQUIRE_FUSE=1 GOMAXPROCS=1 $(GO) test -race -p 1 -count 1 -timeout 10m -run 'Mount|Posix' ./layerfs/...

e2e-deps: deps-test ## e2e prerequisites: Debian packages and the cached Podman 5 chroot (debootstrap once)
	P5_BASE=$(P5_BASE) tests/podman5/setup.sh build

test-e2e: build e2e-deps ## bats end-to-end tests with Podman 4 (host) and Podman 5 (chroot); as root
	@set -o pipefail; SGZ_P5_BASE=$(P5_BASE) STARGZ_STORE_BIN=$(CURDIR)/$(BIN) bats --tap tests/bats \
	  | tee $(OUT)/e2e.tap; rc=$$?; \
	  echo "e2e: $$(grep -c '^ok ' $(OUT)/e2e.tap) passed, $$(grep -c '^not ok ' $(OUT)/e2e.tap) failed"; exit $$rc

test: deps-test vet fmt-check lint tidy-check test-unit test-fuse test-e2e ## every tier: vet, gofmt, staticcheck, tidy, unit (+fuzz seeds), FUSE, e2e

fuzz: ## run each fuzz target for a fixed count
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=200000x $$pkg || exit 1; \
	  done; done

demo: ## installs what it needs, starts a registry, converts an image, runs it lazily (as root)
	@missing=""; for p in $(DEMO_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	$(MAKE) build
	STARGZ_STORE_BIN=$(CURDIR)/$(BIN) scripts/demo.sh

bench: ## benchmark lazy runs vs pull+run over an emulated WAN, as root (BENCH_RUNS=5; see docs/bench.md)
	@missing=""; for p in $(BENCH_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	$(MAKE) build
	$(GO) build -trimpath -o $(OUT)/stargz-bench ./cmd/stargz-bench
	$(OUT)/stargz-bench -store $(BIN) -podman5-base $(P5_BASE) -repo $(CURDIR) -out $(OUT)/bench.json -logs $(OUT)/bench-logs

clean: ## remove build output
	rm -rf $(OUT)
