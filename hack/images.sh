#!/usr/bin/env bash
# Builds the two images of this repository and loads them into the kind cluster:
# the Airflow image (root Dockerfile; also runs the seed Job) and the operator (operator/Dockerfile).
set -euo pipefail
# shellcheck source=hack/lib-kind.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-kind.sh"
preflight docker kind

log "building $AIRFLOW_IMAGE"
docker build -t "$AIRFLOW_IMAGE" -f "$ROOT/Dockerfile" "$ROOT"
log "building $OPERATOR_IMAGE"
# The operator's catalog.json and CRD are symlinks out of operator/: their folders are named contexts.
docker build -t "$OPERATOR_IMAGE" -f "$ROOT/operator/Dockerfile" \
    --build-context catalog="$ROOT/generator/retailflow_generator" \
    --build-context crds="$ROOT/charts/retailflow-operator/crds" "$ROOT/operator"

if cluster_exists; then
    log "loading the images into kind cluster $KIND_CLUSTER"
    kind load docker-image --name "$KIND_CLUSTER" "$AIRFLOW_IMAGE" "$OPERATOR_IMAGE"
else
    log "no kind cluster $KIND_CLUSTER yet: images built, not loaded"
fi
