#!/usr/bin/env bash
# Fetches a chart's dependencies (`helm dependency build`), and fails fast with one line naming every
# pinned chart that cannot be fetched: name, version, repository and why. `make up` runs it; its test
# is tests/unit/chart/test_chart_deps.py.
#
#   hack/chart-deps.sh CHART_DIR
#
# helm resolves https dependencies only through repositories it knows by name, so each repository is
# added first (`helm repo add` downloads its index.yaml), then each pin is looked up in that index
# (`helm search repo`, offline against the cached index). Only when every pin is found does
# `helm dependency build` download the archives. file:// and oci:// dependencies are left to helm.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
chart="${1:?usage: hack/chart-deps.sh CHART_DIR}"
helm="${HELM:-helm}"
[[ -f "$chart/Chart.yaml" ]] || { echo "error: no Chart.yaml in $chart" >&2; exit 2; }

# name, version, repository URL and the local name helm knows it by, one dependency a line
deps="$(python3 - "$chart/Chart.yaml" <<'PY'
import re, sys
text = open(sys.argv[1]).read().split("\ndependencies:", 1)[-1]
for item in re.split(r"\n\s*-\s+", "\n" + text)[1:]:
    fields = dict(re.findall(r"^\s*(name|version|repository):\s*[\"']?([^\"'\s#]+)", item, re.M))
    url = fields.get("repository", "")
    if re.match(r"https?://", url):
        local = re.sub(r"[^a-z0-9]+", "-", url.split("//", 1)[1].lower()).strip("-")
        print(fields["name"], fields["version"], url, local)
PY
)"

failed=()
while read -r name version url local; do
    [[ -n "$name" ]] || continue
    if ! "$helm" repo add --force-update "$local" "$url" >/dev/null 2>&1; then
        failed+=("$name $version from $url (repository unreachable)")
        continue
    fi
    found="$("$helm" search repo "$local/$name" --version "$version" -o json 2>/dev/null || echo '[]')"
    if ! python3 -c 'import json, sys; sys.exit(not any(c["name"] == sys.argv[2] and c["version"] == sys.argv[3] for c in json.loads(sys.argv[1])))' \
            "$found" "$local/$name" "$version"; then
        failed+=("$name $version from $url (not in the repository's index.yaml)")
    fi
done <<<"$deps"

if ((${#failed[@]})); then
    joined="$(printf '%s; ' "${failed[@]}")"
    die "cannot fetch pinned chart(s) of $chart: ${joined%; }"
fi

if ! output="$("$helm" dependency build "$chart" 2>&1)"; then
    die "helm dependency build $chart failed: $(grep -i 'error' <<<"$output" | tail -n 1 || tail -n 1 <<<"$output")"
fi
