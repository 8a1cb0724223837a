# README's commands: `go run ./cmd/rcwatch run` runs rcwatch; `make test` runs the tests.
GO ?= go
PKGS ?= ./...

.PHONY: test deps unit bench fuzz build rehearsal e2e e2e-latency e2e-overload

build:
	$(GO) build -o bin/rcwatch ./cmd/rcwatch

deps:
	bash scripts/test-deps.sh

# The whole suite with the race detector, real servers included; then the
# data checks that skip under -race (they take minutes there and test no
# concurrency): the score on the committed cases and the model's refit.
test: deps
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -timeout 10m -run '^(TestScoreOnCases|TestORESCasesFile|TestModelIsReproducible)$$' ./rules ./cmd/rcwatch-train

# Without the servers' installation step (what a quick local loop wants).
unit:
	$(GO) test -race -count=1 -short $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Each parser of untrusted input for FUZZTIME (seed corpora under each
# package's testdata/fuzz, with testdata/hostile's events among them).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./event -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ingest -run '^$$' -fuzz '^FuzzSSEStream$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ingest -run '^$$' -fuzz '^FuzzRCFeedConvert$$' -fuzztime $(FUZZTIME)
	$(GO) test ./actions/irc -run '^$$' -fuzz '^FuzzFormatAlert$$' -fuzztime $(FUZZTIME)
	$(GO) test ./rules/detect -run '^$$' -fuzz '^FuzzCitations$$' -fuzztime $(FUZZTIME)

# The multi-process rehearsal of the cluster on loopback (docs/DEPLOY.md):
# 3-node NATS, two rcwatch processes per stage, a node and a replica killed.
rehearsal: deps
	$(GO) test -race -count=1 -tags rehearsal -timeout 15m ./internal/rehearsal

# End to end from a real wiki's own RC feed (internal/e2e): the local MediaWiki
# pushes its recent changes to `rcwatch replay --from-mediawiki-rcfeed`, and
# `rcwatch run` (every stage on, edits live) is SIGKILLed and restarted.
e2e: deps
	$(GO) test -race -count=1 -tags e2e -timeout 10m ./internal/e2e

# Latency from the wiki's edit to the IRC line and to the revert over
# E2E_LATENCY_EDITS edits, split into its parts per stage, with the machine's
# load average (docs/BENCHMARKS.md); no race detector.
E2E_LATENCY_EDITS ?= 100
e2e-latency: deps
	E2E_LATENCY_EDITS=$(E2E_LATENCY_EDITS) $(GO) test -count=1 -tags e2e -timeout 20m -run TestLatency -v ./internal/e2e

# The whole pipeline under overload (issue 14, docs/BENCHMARKS.md): 80,000
# events at 2,000/s, a rule matching every Wikidata edit, IRC at 2 lines/s;
# live marker alerts measure how late a live alert is behind the flood. A
# measurement, not part of CI; no race detector.
e2e-overload: deps
	$(GO) test -count=1 -tags overload -timeout 15m -v ./internal/overload
