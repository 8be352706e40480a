# Every entry point of kube-transport. See README.md.
CARGO ?= cargo
CONFIG ?= transport/examples/local.yaml
# The tests build the server with fault injection for the poison-queue tests.
TEST_FEATURES ?= --features transport/test-hooks

.PHONY: build run test fmt lint bench

build:
	$(CARGO) build --workspace --release

## The transport server on the embedded default (queue under ./var).
run:
	$(CARGO) run --release -p transport --bin transport -- --config $(CONFIG)

## Every test: unit, real-peer integration (smtp-sink, smtp-source, swaks, in-test DNS),
## operator reconcile tests and the cluster-free local e2e.
test:
	$(CARGO) test --workspace --all-targets $(TEST_FEATURES)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(TEST_FEATURES) -- -D warnings

## Relay benchmark on loopback: smtp-source -> smtp-sink (ceiling), a private Postfix
## relay and the transport server, same load, same sink; then 100,000 messages queued.
## Writes bench/results/<date>.{md,png,json}. BENCH_ARGS=--quick for a short run.
bench:
	$(CARGO) build --release -p transport -p bench
	$(CARGO) run --release -p bench -- $(BENCH_ARGS)
