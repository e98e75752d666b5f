#!/usr/bin/env bash
# `make status`: the release, its pods, the RetailPipelines and the node's memory requests.
set -euo pipefail
# shellcheck source=hack/lib-kind.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-kind.sh"
preflight kind helm kubectl
cluster_exists || die "no kind cluster $KIND_CLUSTER (run 'make up')"
kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

log "release"
helm status "$RELEASE" -n "$NAMESPACE" | sed -n '1,/^NOTES:/p' | sed '$d' || true
log "RetailPipelines"
kubectl get retailpipelines -A 2>/dev/null || echo "(CRD not installed)"
log "pods in $NAMESPACE"
kubectl -n "$NAMESPACE" get pods -o wide
log "node resources"
kubectl describe node "$KIND_CLUSTER-control-plane" | sed -n '/Allocated resources:/,/Events:/p'
