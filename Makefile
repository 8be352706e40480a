# Every entry point of kube-transport. See README.md.
CARGO ?= cargo
CONFIG ?= transport/examples/local.yaml
# The tests build the server with fault injection for the poison-queue tests.
TEST_FEATURES ?= --features transport/test-hooks
# Builds are slow on 2 cores: Cargo's target folder and the control plane's binaries live in
# a cache outside the clone, kept from one run to the next (built from nothing the first time).
CACHE ?= $(HOME)/.cache/kube-transport
export CARGO_TARGET_DIR ?= $(CACHE)/target
# helm and kubectl (e2e/tools/install-helm.sh), and Postfix's tools in /usr/sbin.
export PATH := $(CACHE)/bin:$(PATH):/usr/sbin

.PHONY: build run test prepare controlplane fmt lint crds e2e-local dev-cluster chart-crds chart-lint chart-test images e2e bench fuzz-smoke

build:
	$(CARGO) build --workspace --release

## The transport server on the embedded default (queue under ./var).
run:
	$(CARGO) run --release -p transport --bin transport -- --config $(CONFIG)

## Every test: unit, real-peer integration (smtp-sink, smtp-source, swaks, in-test DNS),
## the operator's reconcilers against the real API server, and the e2e suite on a real
## control plane with process nodes. Installs what is missing first (prepare), and builds the
## control plane while Cargo builds the workspace.
test: prepare
	@mkdir -p $(CACHE)
	@bash e2e/controlplane/build.sh >$(CACHE)/controlplane-build.log 2>&1 & cp=$$!; \
	  $(CARGO) test --workspace --all-targets $(TEST_FEATURES) --no-run || { kill $$cp 2>/dev/null; exit 1; }; \
	  wait $$cp || { echo "building the control plane failed:"; tail -40 $(CACHE)/controlplane-build.log; exit 1; }
	$(CARGO) test --workspace --all-targets $(TEST_FEATURES)

## Debian packages, helm and kubectl the tests need (e2e/tools/prepare.sh; root).
prepare:
	@bash e2e/tools/prepare.sh

## etcd, kube-apiserver, kube-controller-manager, kube-scheduler from the Go module proxy
## (e2e/controlplane/build.sh) into $(CACHE)/controlplane/<version>.
controlplane:
	bash e2e/controlplane/build.sh

## The e2e suite on the real control plane alone (also part of `make test`): the reconcile
## tests, then every scenario of e2e/tests/cluster (helm, kubectl, mail, maintenance, drains,
## upgrades, the kubectl plugin as a user, the audit log's verdict on the operator). The
## pods run `transport` and `transport-operator`; the plugin scenario puts `kubectl-transport`
## on a user's PATH: all three are --bins of these packages.
e2e-local: prepare controlplane
	$(CARGO) build -p transport -p operator --bins $(TEST_FEATURES)
	$(CARGO) test -p e2e $(TEST_FEATURES) --test reconcile --test cluster

## Try everything without Docker (README): the control plane, three process nodes, the
## operator installed with helm, smtp-sink as the outside world; Ctrl-C tears it down.
dev-cluster: prepare controlplane
	$(CARGO) build -p transport -p operator -p e2e --bins
	$(CARGO_TARGET_DIR)/debug/dev-cluster

## The CRDs generated from the Rust types (operator/src/crd) into crds/ (never edit those by hand).
## The chart carries a copy in charts/kube-transport/files/crds (a test fails when they differ).
## The e2e suite proves the API server accepts them (structural schema, CEL cost budget).
crds:
	$(CARGO) run -q -p operator --bin crdgen -- --out-dir crds
	$(MAKE) chart-crds

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(TEST_FEATURES) -- -D warnings

# ---- Packaging: images, Helm chart, kind e2e (README "Install / upgrade / uninstall") ----
DOCKER ?= docker
IMAGE_REPO ?= ghcr.io/kube-transport
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
CHART := charts/kube-transport
# helm from PATH (the cache first), else where e2e/tools/install-helm.sh puts it.
HELM ?= $(shell command -v helm 2>/dev/null || echo $(CACHE)/bin/helm)

## The images of images/Dockerfile: $(IMAGE_REPO)/transport, /transport-operator and
## /mailtools (smtp-sink + swaks, for helm test and the kind suite), tagged $(IMAGE_TAG).
images:
	$(DOCKER) build -f images/Dockerfile --target transport -t $(IMAGE_REPO)/transport:$(IMAGE_TAG) .
	$(DOCKER) build -f images/Dockerfile --target operator -t $(IMAGE_REPO)/transport-operator:$(IMAGE_TAG) .
	$(DOCKER) build -f images/Dockerfile --target mailtools -t $(IMAGE_REPO)/mailtools:$(IMAGE_TAG) .

## Copies crds/ into the chart (the chart cannot read files outside its folder).
chart-crds:
	rm -f $(CHART)/files/crds/*.yaml
	cp crds/*.yaml $(CHART)/files/crds/

## helm lint, then helm template, with the default values and with every option on.
chart-lint:
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) -f $(CHART)/ci/full-values.yaml
	$(HELM) template kube-transport $(CHART) >/dev/null
	$(HELM) template kube-transport $(CHART) -f $(CHART)/ci/full-values.yaml --api-versions kubetransport.io/v1alpha1 >/dev/null

## What the chart renders (kinds, RBAC, images, probes, CRDs) and the GitOps examples.
chart-test:
	$(CARGO) test -p e2e --test chart --test gitops

## The kind suite (needs docker and kind): creates the cluster of e2e/kind-config.yaml,
## builds and loads the images, helm installs, runs helm test and the scenarios of
## e2e/tests/kind.rs, upgrades, uninstalls, deletes the cluster (KEEP_CLUSTER=1 keeps it).
e2e:
	CARGO="$(CARGO)" HELM="$(HELM)" DOCKER="$(DOCKER)" bash e2e/tools/kind-e2e.sh

## Relay benchmark on loopback: smtp-source -> smtp-sink (ceiling), a private Postfix
## relay and the transport server, same load, same sink; then 100,000 messages queued.
## Writes bench/results/<date>.{md,png,json}. BENCH_ARGS=--quick for a short run.
bench:
	$(CARGO) build --release -p transport -p bench
	$(CARGO) run --release -p bench -- $(BENCH_ARGS)

## Fuzzing (fuzz/, cargo-fuzz on stable, see RELIABILITY.md): every target's stored
## corpus replayed, then FUZZ_SECONDS (default 15) of fuzzing each; under CI=true seed 1 and
## 100,000 runs each (RELIABILITY.md). Needs cargo-fuzz.
fuzz-smoke:
	fuzz/smoke.sh
