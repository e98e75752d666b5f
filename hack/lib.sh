# What the hack/ scripts share; sourced, not run (bash). It runs nothing but bash builtins and
# dirname, so hack/uv.sh can source it on a fresh machine before anything else is installed.
#   ROOT                 the checkout (the folder above hack/)
#   RUN                  where background servers keep their .pid and .log files ($RETAILFLOW_RUN_DIR, default .run)
#   log MESSAGE          progress: "$LOG_NAME: MESSAGE" on stderr, or "==> MESSAGE" on stdout when the
#                        script sets no LOG_NAME (the kind scripts)
#   die MESSAGE          "$LOG_NAME: error: MESSAGE" (or "error: MESSAGE") on stderr, then exit 1
#   url_answers URL [S]  true when an HTTP GET of URL succeeds within S seconds (default 3); python3,
#                        not curl: a minimal Debian has no curl
#   pid_in FILE          the pid recorded in FILE (digits only; empty if FILE is missing)
#   catalog_port NAME    a service's port in RetailFlow's catalog (generator/retailflow_generator/catalog.json):
#                        mysql, postgresql, airflow, superset, minio, openmetadata, dbt_docs
#   catalog_tables       the MySQL source tables in the catalog, parents first, on one line
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${RETAILFLOW_RUN_DIR:-$ROOT/.run}"
CATALOG="$ROOT/generator/retailflow_generator/catalog.json"

log() {
  if [[ -n "${LOG_NAME:-}" ]]; then printf '%s: %s\n' "$LOG_NAME" "$*" >&2; else printf '==> %s\n' "$*"; fi
}
die() { printf '%serror: %s\n' "${LOG_NAME:+$LOG_NAME: }" "$*" >&2; exit 1; }

url_answers() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))' \
    "$1" "${2:-3}" >/dev/null 2>&1
}

pid_in() { tr -dc 0-9 2>/dev/null <"$1" || true; }

catalog_port() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ports"][sys.argv[2]])' "$CATALOG" "$1"
}
catalog_tables() {
  python3 -c 'import json, sys; print(*(t["name"] for t in json.load(open(sys.argv[1]))["source_tables"]))' "$CATALOG"
}
