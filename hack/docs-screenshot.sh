#!/usr/bin/env bash
# `make docs-screenshot`: photographs top_customers' lineage graph in the dbt docs site that
# `make docs` serves, with a real headless Chromium (fresh profile), into
# docs/dbt-lineage-top_customers.png.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/hack/env.sh"
PORT="$(env_setting RETAILFLOW_DOCS_PORT "$(catalog_port dbt_docs)")"
OUT="${1:-$ROOT/docs/dbt-lineage-top_customers.png}"
URL="http://127.0.0.1:$PORT/#!/model/model.retailflow.top_customers?g_v=1&g_i=%2Btop_customers%2B"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
url_answers "http://127.0.0.1:$PORT/catalog.json" 5 \
  || { echo "docs-screenshot: no docs server on port $PORT: run \`make docs\` first" >&2; exit 1; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# The graph is drawn by the page's JavaScript: a virtual-time budget lets it settle before the shot.
timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --disable-quic --no-first-run --user-data-dir="$profile" \
  --window-size=1400,800 --virtual-time-budget=15000 --screenshot="$OUT" "$URL" 2>/dev/null
echo "docs-screenshot: $OUT"
