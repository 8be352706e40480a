# Every entry point of kube-transport. See README.md.
CARGO ?= cargo
CONFIG ?= transport/examples/local.yaml
# The tests build the server with fault injection for the poison-queue tests.
TEST_FEATURES ?= --features transport/test-hooks

.PHONY: build run test fmt lint crds e2e-local

build:
	$(CARGO) build --workspace --release

## The transport server on the embedded default (queue under ./var).
run:
	$(CARGO) run --release -p transport --bin transport -- --config $(CONFIG)

## Every test: unit, real-peer integration (smtp-sink, smtp-source, swaks, in-test DNS),
## operator reconcile tests and the cluster-free local e2e.
test:
	$(CARGO) test --workspace --all-targets $(TEST_FEATURES)

## The cluster-free local e2e alone (also part of `make test`): the operator's loop against an
## in-memory API server, each pod a real `transport` process on 127.x, smtp-sink as next hop.
e2e-local:
	$(CARGO) build -p transport --bin transport $(TEST_FEATURES)
	$(CARGO) test -p e2e $(TEST_FEATURES) --test 'local_*' --lib

## The CRDs generated from the Rust types (operator/src/crd) into crds/ (never edit those by hand).
crds:
	$(CARGO) run -q -p operator --bin crdgen -- --out-dir crds

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(TEST_FEATURES) -- -D warnings
