# Shared settings of the kind scripts (make up, images, down, status); sourced, not run. Every name
# can be overridden from the environment (the Makefile passes its own ?= variables through).
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_NAME=""  # log: "==> …" lines on stdout
export PATH="$ROOT/.tools/bin:$PATH"
KIND_CLUSTER="${KIND_CLUSTER:-retailflow}"
KIND_CONFIG="${KIND_CONFIG:-$ROOT/kind-config.yaml}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"
NAMESPACE="${NAMESPACE:-retailflow}"
RELEASE="${RELEASE:-retailflow}"
CHART="${CHART:-$ROOT/charts/retailflow}"
IMAGE_TAG="${IMAGE_TAG:-0.1.0}"
AIRFLOW_IMAGE="${AIRFLOW_IMAGE:-retailflow/airflow:$IMAGE_TAG}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-retailflow/operator:$IMAGE_TAG}"
HELM_TIMEOUT="${HELM_TIMEOUT:-45m}"
PIPELINE_TIMEOUT="${PIPELINE_TIMEOUT:-20m}"
HELM_EXTRA_ARGS="${HELM_EXTRA_ARGS:-}"
# full: the whole stack (values.yaml); lite: charts/retailflow/values-lite.yaml on top of it.
PROFILE="${PROFILE:-full}"

# Names every missing tool at once, with where to get it.
preflight() {
    local missing=() tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        for tool in "${missing[@]}"; do
            case "$tool" in
                docker) echo "missing: docker (a running Docker engine: https://docs.docker.com/engine/install/)" >&2 ;;
                kind) echo "missing: kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)" >&2 ;;
                helm|kubectl) echo "missing: $tool (run 'make tools' to put it in .tools/bin)" >&2 ;;
                *) echo "missing: $tool" >&2 ;;
            esac
        done
        exit 1
    fi
    if [[ " $* " == *" docker "* ]] && ! docker info >/dev/null 2>&1; then
        die "docker is installed but no Docker engine answers (is the daemon running, may this user use it?)"
    fi
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; }
