# README's commands: `go run ./cmd/rcwatch run` runs rcwatch; `make test` runs the tests.
GO ?= go
PKGS ?= ./...

.PHONY: test deps unit bench fuzz build

build:
	$(GO) build -o bin/rcwatch ./cmd/rcwatch

deps:
	bash scripts/test-deps.sh

# The whole suite with the race detector, real servers included.
test: deps
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Without the servers' installation step (what a quick local loop wants).
unit:
	$(GO) test -race -count=1 -short $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fuzz:
	$(GO) test ./event -run '^$$' -fuzz FuzzDecode -fuzztime 30s
