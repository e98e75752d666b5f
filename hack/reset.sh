#!/usr/bin/env bash
# `make reset`: back to a clean local mode, after a confirmation. Drops only what RetailFlow made:
#   - in MySQL ($RETAILFLOW_MYSQL_URL): the generator's four tables (and a seed's __new/__old leftovers);
#   - in the warehouse ($RETAILFLOW_WAREHOUSE_URL): the raw schema ($RETAILFLOW_RAW_SCHEMA or raw) and
#     dbt's staging and marts schemas;
#   - files: .lake/ (the local lake), dbt/target/ and dbt/logs/, .airflow/logs/ (task logs).
# It stops the background servers first (make stop). It keeps the databases themselves, their users
# and .env.local (passwords), the installed environments, and Airflow's and Superset's own metadata.
# CONFIRM=yes skips the question (for scripts); without a terminal and without it, nothing happens.
set -euo pipefail
LOG_NAME=reset
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# RETAILFLOW_HOME: the checkout whose files are reset (tests point it at a scratch folder)
CHECKOUT="${RETAILFLOW_HOME:-$ROOT}"
# shellcheck source=hack/env.sh
source "$ROOT/hack/env.sh"

mysql_url="$(env_setting RETAILFLOW_MYSQL_URL)"
warehouse_url="$(env_setting RETAILFLOW_WAREHOUSE_URL)"
tables="$(catalog_tables)"
raw_schema="${RETAILFLOW_RAW_SCHEMA:-raw}"
[[ -n "$mysql_url" && -n "$warehouse_url" ]] || die "RETAILFLOW_MYSQL_URL / RETAILFLOW_WAREHOUSE_URL unset: nothing to reset (run 'make services' first)"
python="$ROOT/dags/.venv/bin/python"
[[ -x "$python" ]] || die "$python not found: run 'make sync' first"
where() { sed -E 's#^([a-z+]+://)([^:@/]+)(:[^@]*)?@#\1\2@#' <<<"$1"; }  # the URL without its password

cat <<EOF
reset: this drops
  - MySQL $(where "$mysql_url"): tables ${tables// /, } (and __new/__old leftovers)
  - warehouse $(where "$warehouse_url"): schemas $raw_schema, staging, marts (with everything in them)
  - files in ${CHECKOUT}: .lake/, dbt/target/, dbt/logs/, .airflow/logs/
  and stops the background servers. Kept: the databases and users, .env.local, the environments,
  Airflow's and Superset's metadata.
EOF
if [[ "${CONFIRM:-}" != "yes" ]]; then
  [[ -t 0 ]] || die "not confirmed: run 'make reset' in a terminal, or 'make reset CONFIRM=yes'"
  read -r -p "reset: type 'reset' to go on: " answer
  [[ "$answer" == "reset" ]] || { echo "reset: cancelled, nothing changed"; exit 1; }
fi

RETAILFLOW_RUN_DIR="$CHECKOUT/.run" "$ROOT/hack/stop.sh"
RETAILFLOW_MYSQL_URL="$mysql_url" RETAILFLOW_WAREHOUSE_URL="$warehouse_url" RAW_SCHEMA="$raw_schema" TABLES="$tables" \
  MYSQL_PORT="$(catalog_port mysql)" "$python" - <<'PY'
import os
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql

TABLES = os.environ["TABLES"].split()[::-1]  # children first
my = urlsplit(os.environ["RETAILFLOW_MYSQL_URL"])
conn = pymysql.connect(host=my.hostname, port=my.port or int(os.environ["MYSQL_PORT"]), user=unquote(my.username or ""),
                       password=unquote(my.password or ""), database=unquote(my.path.lstrip("/")), autocommit=True)
with conn, conn.cursor() as cur:
    names = [f"`{t}{suffix}`" for suffix in ("", "__new", "__old") for t in TABLES]
    cur.execute("set foreign_key_checks = 0")
    cur.execute("drop table if exists " + ", ".join(names))
print("reset: MySQL tables dropped")
scheme, _, rest = os.environ["RETAILFLOW_WAREHOUSE_URL"].partition("://")
with psycopg.connect("postgresql://" + rest, autocommit=True) as pg:
    for schema in (os.environ["RAW_SCHEMA"], "staging", "marts"):
        pg.execute(f'drop schema if exists "{schema}" cascade')
print("reset: warehouse schemas dropped")
PY
rm -rf "$CHECKOUT/.lake" "$CHECKOUT/dbt/target" "$CHECKOUT/dbt/logs" "$CHECKOUT/.airflow/logs"
echo "reset: done; 'make demo' (or make seed, make ingest, make dbt-build) starts again from nothing"
