#!/usr/bin/env bash
# kubectl for the stand-in conformance test (tests/integration/local/test_kube_kubectl.py), from
# Debian's kubernetes-client package. Idempotent and quiet when a kubectl is already on PATH (any
# vendor's); installs it otherwise (needs root, as CI has).
set -euo pipefail

if command -v kubectl >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-kubectl: kubectl is not on PATH and this is not root;" >&2
    echo "  install it with: sudo apt-get install -y kubernetes-client" >&2
    exit 1
fi

echo "ensure-kubectl: installing kubernetes-client (Debian package)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
kubectl version --client
