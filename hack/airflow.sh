#!/usr/bin/env bash
# `make airflow`: a local Airflow 3 (api-server with the UI, scheduler, dag-processor, triggerer;
# LocalExecutor) from the dags project's venv, in the background on localhost, serving dags/.
#
# - Metadata in the local PostgreSQL: its own database and role (`airflow`), generated password,
#   as the chart's users get (SQLite would serialise the scheduler and its workers).
# - The Simple auth manager with one user, `admin`, whose generated password is kept in .env.local
#   (RETAILFLOW_AIRFLOW_ADMIN_PASSWORD); never admin/admin.
# - Connections from .env.local as AIRFLOW_CONN_* (retailflow_mysql, retailflow_warehouse).
# - One process group, recorded in .run/airflow.pid (logs in .run/airflow.log, AIRFLOW_HOME in
#   .airflow/); `make stop` ends it. A second run finds it healthy and reuses it.
set -euo pipefail
LOG_NAME=airflow
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=hack/env.sh
source "$ROOT/hack/env.sh"
AIRFLOW_HOME="${RETAILFLOW_AIRFLOW_HOME:-$ROOT/.airflow}"
VENV="$ROOT/dags/.venv"
PORT="$(env_setting RETAILFLOW_AIRFLOW_PORT "$(catalog_port airflow)")"
PG_PORT="$(catalog_port postgresql)"
URL="http://127.0.0.1:$PORT"
USERNAME=admin
AF_DB="${RETAILFLOW_AIRFLOW_DB:-airflow}"
AF_ROLE="${RETAILFLOW_AIRFLOW_DB_USER:-airflow}"

[[ -x "$VENV/bin/airflow" ]] || die "$VENV/bin/airflow not found: run 'make sync' first"
mkdir -p "$RUN" "$AIRFLOW_HOME"

healthy() {
  python3 - "$URL" <<'PY' 2>/dev/null
import json, sys, urllib.request
try:
    h = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v2/monitor/health", timeout=5))
except Exception:
    sys.exit(1)
parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
sys.exit(0 if all((h.get(p) or {}).get("status") == "healthy" for p in parts) else 1)
PY
}

print_access() {
  cat <<EOF
airflow: UI and API at $URL
airflow:   user:     $USERNAME
airflow:   password: in ${ENV_FILE#"$ROOT"/}, key RETAILFLOW_AIRFLOW_ADMIN_PASSWORD (sed -n 's/^RETAILFLOW_AIRFLOW_ADMIN_PASSWORD=//p' ${ENV_FILE#"$ROOT"/})
airflow:   logs:     servers in ${RUN#"$ROOT"/}/airflow.log, tasks in ${AIRFLOW_HOME#"$ROOT"/}/logs/dag_id=<dag>/run_id=<run>/; stop with 'make stop'
EOF
}

if [[ "${1:-}" == "--access" ]]; then  # print how to reach the UI, and nothing else
  print_access
  exit 0
fi

pid="$(pid_in "$RUN/airflow.pid")"
if [[ -n "$pid" && -d "/proc/$pid" ]]; then
  if healthy; then
    log "already running (pid $pid), reusing it"
    print_access
    exit 0
  fi
  log "pid $pid is alive but Airflow is not healthy yet; waiting for it"
else
  # ---------------------------------------------------------- metadata database and role
  admin_pw="$(env_ensure RETAILFLOW_AIRFLOW_ADMIN_PASSWORD)"
  db_pw="$(env_ensure RETAILFLOW_AIRFLOW_DB_PASSWORD)"
  env_ensure RETAILFLOW_AIRFLOW_JWT_SECRET >/dev/null
  env_ensure RETAILFLOW_AIRFLOW_SECRET_KEY >/dev/null
  db_url="$(env_get RETAILFLOW_AIRFLOW_DB_URL)"
  if [[ -z "$db_url" ]]; then
    db_url="postgresql://$AF_ROLE:$db_pw@127.0.0.1:$PG_PORT/$AF_DB"
    if ! PGPASSWORD="$db_pw" psql -h 127.0.0.1 -U "$AF_ROLE" -d "$AF_DB" -qAtXc 'select 1' >/dev/null 2>&1; then
      [[ "$(id -u)" == 0 ]] || die "cannot create the PostgreSQL role '$AF_ROLE' and database '$AF_DB' without root; create them, or put RETAILFLOW_AIRFLOW_DB_URL=postgresql://USER:PW@HOST:$PG_PORT/DB in .env.local"
      log "creating PostgreSQL role '$AF_ROLE' and database '$AF_DB' for Airflow's metadata"
      pg_ensure_role_db "$AF_ROLE" "$AF_DB" "$db_pw"
    fi
  fi
  rest="${db_url#*://}"

  # ---------------------------------------------------------- settings (environment only)
  umask 077
  printf '{"%s": "%s"}\n' "$USERNAME" "$admin_pw" >"$AIRFLOW_HOME/passwords.json"
  # The scheduler imports dbt and Cosmos once; the task processes it forks inherit them.
  mkdir -p "$AIRFLOW_HOME/config"
  printf 'from retailflow_pipeline.preload import preload\n\npreload()\n' >"$AIRFLOW_HOME/config/airflow_local_settings.py"
  export AIRFLOW_HOME
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://$rest"
  # Without an async URL, `db migrate` fails on "No module named 'asyncpg'".
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC="postgresql+psycopg://$rest"
  export AIRFLOW__CORE__EXECUTOR=LocalExecutor
  # The default of 32 forks 32 idle workers; 4 fit a laptop.
  export AIRFLOW__CORE__PARALLELISM="${RETAILFLOW_AIRFLOW_PARALLELISM:-4}"
  export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="$USERNAME:admin"
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="$URL/execution/"
  export AIRFLOW__API__BASE_URL="$URL"
  export AIRFLOW__API__PORT="$PORT"
  export AIRFLOW__API__HOST=127.0.0.1
  export AIRFLOW__API__WORKERS=1
  export AIRFLOW__API__SECRET_KEY="$(env_get RETAILFLOW_AIRFLOW_SECRET_KEY)"
  export AIRFLOW__API_AUTH__JWT_SECRET="$(env_get RETAILFLOW_AIRFLOW_JWT_SECRET)"
  export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=30
  # The scheduler, DAG processor, worker and Cosmos settings the chart's Airflow runs with (airflow.config in
  # charts/retailflow/values.yaml, where each is explained): the same per-run overhead here and there.
  while IFS='=' read -r key value; do
    [[ -n "${!key:-}" ]] || export "$key=$value"
  done < <("$VENV/bin/python" - "$ROOT/charts/retailflow/values.yaml" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))["airflow"]["config"]
for section in ("scheduler", "dag_processor", "workers", "cosmos"):
    for key, value in (config.get(section) or {}).items():
        print(f"AIRFLOW__{section.upper()}__{key.upper()}={value}")
PY
)
  export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="${RETAILFLOW_AIRFLOW_WORKER_LOG_PORT:-8793}"
  export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="${RETAILFLOW_AIRFLOW_TRIGGER_LOG_PORT:-8794}"
  export AIRFLOW__COSMOS__ENABLE_TELEMETRY=False
  # Cosmos's cache (dbt's partial-parse file, the profiles it renders) in this Airflow's home: on the
  # shared /tmp/cosmos, the newest partial-parse file may be another local Airflow's (tests, benchmarks),
  # made for another database, and the next run here parses the whole project again
  export AIRFLOW__COSMOS__CACHE_DIR="${AIRFLOW__COSMOS__CACHE_DIR:-$AIRFLOW_HOME/cosmos}"
  export DO_NOT_TRACK=1
  export RETAILFLOW_DBT_MANIFEST="${RETAILFLOW_DBT_MANIFEST:-$ROOT/dbt/target/manifest.json}"
  # The pipeline's connections, from the local services' URLs.
  mysql_url="$(env_setting RETAILFLOW_MYSQL_URL)"
  warehouse_url="$(env_setting RETAILFLOW_WAREHOUSE_URL)"
  [[ -n "$mysql_url" && -n "$warehouse_url" ]] || die "RETAILFLOW_MYSQL_URL / RETAILFLOW_WAREHOUSE_URL unset: run 'make services' first"
  export AIRFLOW_CONN_RETAILFLOW_MYSQL="$mysql_url"
  export AIRFLOW_CONN_RETAILFLOW_WAREHOUSE="$warehouse_url"
  # Everything else in .env.local (Superset, OpenMetadata settings for the dashboards and
  # governance tasks) reaches the tasks through the environment.
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^RETAILFLOW_[A-Z0-9_]*$ ]] || continue
    [[ "$key" =~ ^RETAILFLOW_AIRFLOW_ ]] && continue
    [[ -n "${!key:-}" ]] || export "$key=$value"
  done <"$ENV_FILE"

  if python3 -c 'import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$PORT"; then
    die "port $PORT is taken by another program; set RETAILFLOW_AIRFLOW_PORT"
  fi

  where="${rest#*@}"
  log "migrating the metadata database (${where%%\?*})"
  "$VENV/bin/airflow" db migrate >"$RUN/airflow-migrate.log" 2>&1 || { tail -n 30 "$RUN/airflow-migrate.log" >&2; die "airflow db migrate failed (full log: ${RUN#"$ROOT"/}/airflow-migrate.log)"; }

  log "starting api-server, scheduler, dag-processor and triggerer (logs: ${RUN#"$ROOT"/}/airflow.log)"
  cd "$ROOT"
  # One process group (setsid): `make stop` ends the four servers and their workers together.
  setsid bash -c '
    bin="$1"
    "$bin" api-server --port "$2" --host 127.0.0.1 --workers 1 &
    "$bin" scheduler &
    "$bin" dag-processor &
    "$bin" triggerer &
    wait' airflow-local "$VENV/bin/airflow" "$PORT" >"$RUN/airflow.log" 2>&1 </dev/null &
  echo $! >"$RUN/airflow.pid"
  pid="$(cat "$RUN/airflow.pid")"
fi

log "waiting for the four servers to report healthy"
for i in $(seq 1 180); do
  # The API server binds the port only after the migration: another program may have taken it since the
  # check above (uvicorn's words for it, from CPython's asyncio). Stop the others rather than wait.
  if grep -qF "error while attempting to bind on address ('127.0.0.1', $PORT): address already in use" "$RUN/airflow.log"; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$RUN/airflow.pid"
    die "port $PORT is taken by another program (since the check before the migration: the API server could not bind it); set RETAILFLOW_AIRFLOW_PORT"
  fi
  healthy && break
  [[ -d "/proc/$pid" ]] || { tail -n 40 "$RUN/airflow.log" >&2; die "Airflow exited (see ${RUN#"$ROOT"/}/airflow.log)"; }
  sleep 1
done
healthy || die "Airflow did not become healthy in 180 s (see ${RUN#"$ROOT"/}/airflow.log)"
log "healthy after ${i} s"
# The execution API (what task processes call) is slow on its first request: about 5 s that the
# first task of the first run would otherwise wait for.
python3 - "$URL" <<'PY' >&2 || true
import sys, time, urllib.request
started = time.monotonic()
urllib.request.urlopen(sys.argv[1] + "/execution/health", timeout=120).read()
print(f"airflow: execution API answered in {time.monotonic() - started:.1f} s")
PY
print_access
