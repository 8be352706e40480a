#!/usr/bin/env bash
# `make e2e`: the kind suite, start to end, on a machine with docker and kind.
#   1. a kind cluster from e2e/kind-config.yaml
#   2. the images (make images) tagged for kind, loaded into its nodes (kind load)
#   3. helm install of charts/kube-transport with those images, then `helm test`
#   4. the scenarios of e2e/tests/kind.rs (KUBE_TRANSPORT_E2E=1, current kubeconfig = kind)
#   5. helm upgrade (a changed value rolls the operator), helm uninstall (the CRDs stay)
#   6. the cluster is deleted, also on failure (KEEP_CLUSTER=1 keeps it for a look)
# Environment: KIND, DOCKER, HELM, CARGO, KIND_CLUSTER, KIND_NODE_IMAGE, KEEP_CLUSTER.
set -euo pipefail
cd "$(dirname "$0")/../.."

KIND="${KIND:-kind}"
DOCKER="${DOCKER:-docker}"
CARGO="${CARGO:-cargo}"
CLUSTER="${KIND_CLUSTER:-kube-transport-e2e}"
RELEASE=kube-transport
NAMESPACE=kube-transport-system
REPO=kube-transport.local
TAG=e2e
TOOLS="$HOME/.cache/kube-transport/bin"

step() { echo "=== $*"; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "make e2e needs $1 ($2)" >&2; exit 2; }; }
need "$DOCKER" "a Docker engine"
need "$KIND" "https://kind.sigs.k8s.io"
# helm and kubectl: from PATH, else installed by install-helm.sh.
if ! command -v "${HELM:-helm}" >/dev/null 2>&1 || ! command -v kubectl >/dev/null 2>&1; then
  bash e2e/tools/install-helm.sh "$TOOLS"
  export PATH="$TOOLS:$PATH"
fi
HELM="$(command -v "${HELM:-helm}" 2>/dev/null || echo "$TOOLS/helm")"
"$DOCKER" info >/dev/null 2>&1 || { echo "make e2e: the Docker engine does not answer" >&2; exit 2; }

cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "=== failed; the operator's log:"
    kubectl -n "$NAMESPACE" logs "deployment/$RELEASE" --tail=200 2>/dev/null || true
  fi
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    echo "=== keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  else
    step "deleting cluster $CLUSTER"
    "$KIND" delete cluster --name "$CLUSTER" || true
  fi
  exit "$status"
}
trap cleanup EXIT

step "kind cluster $CLUSTER"
"$KIND" create cluster --name "$CLUSTER" --config e2e/kind-config.yaml --wait 180s \
  ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
kubectl config use-context "kind-$CLUSTER"

step "images $REPO/*:$TAG"
make images DOCKER="$DOCKER" IMAGE_REPO="$REPO" IMAGE_TAG="$TAG"
for image in transport transport-operator mailtools; do
  "$KIND" load docker-image --name "$CLUSTER" "$REPO/$image:$TAG"
done

values=(
  --set "image.repository=$REPO/transport-operator,image.tag=$TAG"
  --set "transportImage.repository=$REPO/transport,transportImage.tag=$TAG"
  --set "tests.image.repository=$REPO/mailtools,tests.image.tag=$TAG"
)

step "helm install"
"$HELM" install "$RELEASE" charts/kube-transport -n "$NAMESPACE" --create-namespace \
  "${values[@]}" --wait --timeout 5m
kubectl get crd transportservices.kubetransport.io transportconfigs.kubetransport.io \
  servercomponentstates.kubetransport.io

step "helm test"
"$HELM" test "$RELEASE" -n "$NAMESPACE" --logs --timeout 8m

step "scenarios (e2e/tests/kind.rs)"
KUBE_TRANSPORT_E2E=1 KUBE_TRANSPORT_E2E_MAILTOOLS_IMAGE="$REPO/mailtools:$TAG" \
  "$CARGO" test -p e2e --test kind -- --test-threads=1 --nocapture

step "helm upgrade (a changed value rolls the operator)"
"$HELM" upgrade "$RELEASE" charts/kube-transport -n "$NAMESPACE" --reuse-values \
  --set logLevel=debug --wait --timeout 5m
kubectl -n "$NAMESPACE" rollout status "deployment/$RELEASE" --timeout 3m
kubectl -n "$NAMESPACE" get deployment "$RELEASE" -o jsonpath='{.spec.template.spec.containers[0].env}' | grep -q debug

step "helm uninstall (the CRDs stay: helm.sh/resource-policy keep)"
"$HELM" uninstall "$RELEASE" -n "$NAMESPACE" --wait --timeout 3m
kubectl get crd transportservices.kubetransport.io >/dev/null

step "passed"
