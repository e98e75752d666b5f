#!/usr/bin/env bash
# `make docs`: dbt's docs site (catalog and lineage graph) built from the warehouse and served on
# localhost. Generates the docs (`dbt docs generate` reads the warehouse's catalog; it changes no
# table), then starts `dbt docs serve` as a process-group leader, records it in .run/docs.pid (so
# `make stop` stops it) and waits until the page answers. A docs server already running from this
# checkout is replaced.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/hack/env.sh"
UV="${UV:-$ROOT/.tools/bin/uv}"
PORT="$(env_setting RETAILFLOW_DOCS_PORT "$(catalog_port dbt_docs)")"
mkdir -p "$RUN"

if [[ -f "$RUN/docs.pid" ]]; then
  RETAILFLOW_RUN_DIR="$RUN" "$ROOT/hack/stop.sh" >/dev/null || true
fi
# `docs generate` also writes the manifest; the catalog comes from the warehouse's information schema.
"$ROOT/hack/with-env" "$UV" run --quiet --project "$ROOT/dags" python -m retailflow_pipeline.dbt docs generate

cd "$ROOT"
setsid "$ROOT/hack/with-env" "$UV" run --quiet --project "$ROOT/dags" python -m retailflow_pipeline.dbt \
  docs serve --host 127.0.0.1 --port "$PORT" --no-browser >"$RUN/docs.log" 2>&1 </dev/null &
echo $! >"$RUN/docs.pid"
for _ in $(seq 1 120); do
  if url_answers "http://127.0.0.1:$PORT/catalog.json" 2; then
    echo "docs: dbt docs on http://127.0.0.1:$PORT (lineage of top_customers: http://127.0.0.1:$PORT/#!/model/model.retailflow.top_customers?g_v=1); make stop ends it"
    exit 0
  fi
  if ! kill -0 "$(pid_in "$RUN/docs.pid")" 2>/dev/null; then
    # dbt's server binds this port, and only it, after the docs are generated: another program may have taken it by then
    if grep -qF "Address already in use" "$RUN/docs.log"; then
      rm -f "$RUN/docs.pid"
      echo "docs: port $PORT is taken by another program; set RETAILFLOW_DOCS_PORT" >&2
      exit 1
    fi
    echo "docs: the docs server exited; see $RUN/docs.log" >&2
    tail -n 20 "$RUN/docs.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "docs: no answer on port $PORT after 60 s; see $RUN/docs.log" >&2
exit 1
