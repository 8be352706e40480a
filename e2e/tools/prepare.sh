#!/usr/bin/env bash
# What the tests and `make dev-cluster` need besides what Cargo builds, installed when
# missing, so that `make test` passes on a new machine by itself:
# - Debian packages: postfix (smtp-sink, smtp-source), swaks, lua5.4 (the Argo CD health
#   check test), iproute2 (the pod network), util-linux (nsenter, exec probes), openssl (the
#   examples' TLS Secret), dnsmasq-base (make bench's many-destinations run answers MX with it);
# - helm and kubectl (e2e/tools/install-helm.sh) into ~/.cache/kube-transport/bin;
# - Go, to build the control plane (e2e/controlplane/build.sh): it must be there already.
# Runs as root: apt, and pods run in network and mount namespaces of their own.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "prepare.sh: run as root (apt-get, and the e2e suite's pods run in network and mount namespaces of their own)" >&2
  exit 1
fi
packages=()
need() { # command package
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || packages+=("$2")
}
need smtp-sink postfix
need smtp-source postfix
need swaks swaks
need lua5.4 lua5.4
need ip iproute2
need nsenter util-linux
need openssl openssl
need dnsmasq dnsmasq-base
if [ ${#packages[@]} -gt 0 ]; then
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  echo "prepare.sh: installing ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # postfix asks for a mailer type on install; "No configuration" keeps it from starting a system MTA.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq "${packages[@]}" >/dev/null
fi
bash e2e/tools/install-helm.sh "$HOME/.cache/kube-transport/bin" >/dev/null
if ! command -v go >/dev/null 2>&1; then
  echo "prepare.sh: Go is needed to build the Kubernetes control plane from the Go module proxy (e2e/controlplane/build.sh)" >&2
  exit 1
fi
