# Every entry point of kube-transport. See README.md.
CARGO ?= cargo
CONFIG ?= transport/examples/local.yaml
# The tests build the server with fault injection for the poison-queue tests.
TEST_FEATURES ?= --features transport/test-hooks

.PHONY: build run test fmt lint fuzz-smoke

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

## Fuzzing (fuzz/, cargo-fuzz on stable, see RELIABILITY.md): every target's stored
## corpus replayed, then FUZZ_SECONDS (default 15) of fuzzing each. Needs cargo-fuzz.
fuzz-smoke:
	fuzz/smoke.sh
