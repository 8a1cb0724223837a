# README's commands: `go run ./cmd/rcwatch run` runs rcwatch; `make test` runs the tests.
GO ?= go
PKGS ?= ./...

.PHONY: test deps unit bench fuzz build rehearsal

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

# The multi-process rehearsal of the cluster on loopback (docs/DEPLOY.md):
# 3-node NATS, two rcwatch processes per stage, a node and a replica killed.
rehearsal: deps
	$(GO) test -race -count=1 -tags rehearsal -timeout 15m ./internal/rehearsal
