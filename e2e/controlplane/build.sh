#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the Go module
# proxy into a cache outside the clone, keyed by version (as CARGO_TARGET_DIR is):
#   $KUBE_TRANSPORT_CONTROLPLANE (default ~/.cache/kube-transport/controlplane/<version>)
# Prints that folder. A binary already there is kept; a cold build is minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
version=$(cat VERSION)
out="${KUBE_TRANSPORT_CONTROLPLANE:-$HOME/.cache/kube-transport/controlplane/$version}"
mkdir -p "$out"
export GOFLAGS="-buildvcs=false -mod=readonly"
# The version the binaries report (kubectl version, helm's kubeVersion check, the API
# server's emulation version) comes from these variables, as Kubernetes' own build sets them.
minor=$(echo "$version" | cut -d. -f2)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
build() { # name package
  if [ -x "$out/$1" ]; then return; fi
  echo "building $1 ($2 at $version)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$out/$1.tmp" "$2"
  mv "$out/$1.tmp" "$out/$1"
}
build etcd ./etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
echo "$out"
