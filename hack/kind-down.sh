#!/usr/bin/env bash
# `make down`: deletes the kind cluster and everything in it (volumes included).
set -euo pipefail
# shellcheck source=hack/lib-kind.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-kind.sh"
preflight kind
if cluster_exists; then
    log "deleting kind cluster $KIND_CLUSTER"
    kind delete cluster --name "$KIND_CLUSTER"
else
    log "no kind cluster $KIND_CLUSTER"
fi
