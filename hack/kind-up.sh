#!/usr/bin/env bash
# `make up`: chart dependencies, kind cluster, images, the release, then waits for the default
# RetailPipeline to be Ready and prints how to reach each UI. Safe to run again: every step is
# create-or-update.
set -euo pipefail
# shellcheck source=hack/lib-kind.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-kind.sh"
case "$PROFILE" in
    full) profile_values=() ;;
    lite) profile_values=(-f "$CHART/values-lite.yaml") ;;
    *) die "PROFILE=$PROFILE: use full (the whole stack, a 16 GiB node) or lite (no Airbyte, OpenMetadata or OpenSearch; 8 GiB)" ;;
esac
# Docker and kind first: nothing is downloaded on a machine that could never run the cluster.
preflight docker kind
"$ROOT/hack/tools.sh"
preflight helm kubectl

log "fetching chart dependencies"
# Before the cluster and the images, so that a pin that cannot be fetched costs seconds, not minutes:
# adds each chart repository, checks every pin against its index.yaml, then `helm dependency build`.
# A chart that cannot be fetched stops `make up` here, with one line naming it, its version and
# repository.
"$ROOT/hack/chart-deps.sh" "$CHART"

if cluster_exists; then
    log "kind cluster $KIND_CLUSTER exists"
else
    log "creating kind cluster $KIND_CLUSTER"
    kind create cluster --name "$KIND_CLUSTER" --config "$KIND_CONFIG" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 5m
fi
kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

"$ROOT/hack/images.sh"

# Helm installs CRDs only on the first install and never upgrades them: keep the cluster's copy
# current on every run, before the release, whose RetailPipeline the current CRD must admit (the lite
# profile's has no spec.airbyte, which an older CRD requires).
kubectl apply --server-side --force-conflicts -f "$ROOT/charts/retailflow-operator/crds/"

log "installing release $RELEASE ($PROFILE profile) in namespace $NAMESPACE (first install takes 10-20 minutes)"
# shellcheck disable=SC2086  # HELM_EXTRA_ARGS is a list of flags
helm upgrade --install "$RELEASE" "$CHART" \
    --namespace "$NAMESPACE" --create-namespace ${profile_values[@]+"${profile_values[@]}"} \
    --set-string "images.airflow.tag=${AIRFLOW_IMAGE##*:}" \
    --set-string "airflow.defaultAirflowTag=${AIRFLOW_IMAGE##*:}" \
    --set-string "operator.image.tag=${OPERATOR_IMAGE##*:}" \
    --set-string "images.pipelineJob.tag=${OPERATOR_IMAGE##*:}" \
    --wait --timeout "$HELM_TIMEOUT" $HELM_EXTRA_ARGS

pipeline="$(helm get values "$RELEASE" -n "$NAMESPACE" --all -o json | python3 -c 'import json,sys; v=json.load(sys.stdin)["pipeline"]; print(v["name"] if v["enabled"] else "")')"
if [[ -n "$pipeline" ]]; then
    log "waiting for RetailPipeline $pipeline to be Ready (up to $PIPELINE_TIMEOUT)"
    kubectl -n "$NAMESPACE" wait "retailpipeline/$pipeline" --for=condition=Ready --timeout="$PIPELINE_TIMEOUT"
fi

helm status "$RELEASE" -n "$NAMESPACE" | sed -n '/^NOTES:/,$p'
