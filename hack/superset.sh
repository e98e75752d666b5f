#!/usr/bin/env bash
# `make dashboards`: the local Superset (6.1, its own uv project in hack/envs/superset) in the
# background on 127.0.0.1, with RetailFlow's dashboards imported.
#
# - Metadata: the local PostgreSQL, database `superset` owned by its own role `superset` (created
#   here, as root, like hack/services.sh creates the warehouse's), so the same migrations and the
#   same shared cache (Superset's key-value table) run as in the chart.
# - Settings and generated secrets go to .env.local through hack/env.sh: RETAILFLOW_SUPERSET_URL,
#   _USERNAME, _PASSWORD (the admin), _SECRET_KEY, _DB_PASSWORD. Airflow, started afterwards,
#   reads the first three to refresh the dashboards in its pipeline runs.
# - gunicorn runs as a process-group leader: .run/superset.pid, .run/superset.log; `make stop`
#   stops it. A second run reuses a running Superset and only re-imports the bundle.
set -euo pipefail

LOG_NAME=superset
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/hack/env.sh"
VENV="$ROOT/hack/envs/superset/.venv"
FILES="$ROOT/charts/retailflow/files/superset"
UV="${UV:-$ROOT/.tools/bin/uv}"
PORT="${RETAILFLOW_SUPERSET_PORT:-$(catalog_port superset)}"
WORKERS="${RETAILFLOW_SUPERSET_WORKERS:-2}"
PG_DB=superset
PG_ROLE=superset

[[ -x "$VENV/bin/superset" ]] || die "Superset is not installed: run \`make sync-superset\` first"
mkdir -p "$RUN"

# ---------------------------------------------------------------- metadata database and role
db_pw="$(env_ensure RETAILFLOW_SUPERSET_DB_PASSWORD)"
if ! PGPASSWORD="$db_pw" psql -h 127.0.0.1 -U "$PG_ROLE" -d "$PG_DB" -qAtXc 'select 1' >/dev/null 2>&1; then
  [[ "$(id -u)" == 0 ]] || die "cannot log in to PostgreSQL as '$PG_ROLE' and cannot create the role without root:
  create role $PG_ROLE (login) with the password RETAILFLOW_SUPERSET_DB_PASSWORD of .env.local and database $PG_DB owned by it"
  log "creating PostgreSQL database '$PG_DB' and role '$PG_ROLE' (or setting its password)"
  pg_ensure_role_db "$PG_ROLE" "$PG_DB" "$db_pw"
fi

# ---------------------------------------------------------------- settings in .env.local
[[ -n "$(env_get RETAILFLOW_SUPERSET_USERNAME)" ]] || env_set RETAILFLOW_SUPERSET_USERNAME admin
env_ensure RETAILFLOW_SUPERSET_PASSWORD >/dev/null
new_key=0
if [[ -z "$(env_get RETAILFLOW_SUPERSET_SECRET_KEY)" ]]; then
  # Superset encrypts the stored warehouse password with it: generated once, kept.
  new_key=1
  env_set RETAILFLOW_SUPERSET_SECRET_KEY "$(python3 -c 'import secrets; print(secrets.token_urlsafe(42))')"
fi
url="http://127.0.0.1:$PORT"
[[ "$(env_get RETAILFLOW_SUPERSET_URL)" == "$url" ]] || env_set RETAILFLOW_SUPERSET_URL "$url"

export SUPERSET_CONFIG_PATH="$FILES/superset_config.py"
export SUPERSET_SECRET_KEY="$(env_get RETAILFLOW_SUPERSET_SECRET_KEY)"
export SUPERSET_DATABASE_URI="postgresql+psycopg2://$PG_ROLE:$db_pw@127.0.0.1:$(catalog_port postgresql)/$PG_DB"
export RETAILFLOW_SUPERSET_USERNAME="$(env_get RETAILFLOW_SUPERSET_USERNAME)"
export RETAILFLOW_SUPERSET_PASSWORD="$(env_get RETAILFLOW_SUPERSET_PASSWORD)"
export FLASK_APP=superset SUPERSET_LOG_LEVEL=warning
export PATH="$VENV/bin:$PATH"

healthy() { url_answers "$url/health" 3; }
running_pid() {
  local pid
  pid="$(pid_in "$RUN/superset.pid")"
  [[ -n "$pid" && -d "/proc/$pid" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$VENV" && echo "$pid"
}

# ---------------------------------------------------------------- start (or reuse) the server
if pid="$(running_pid)"; then
  log "already running (pid $pid, $url)"
else
  if healthy; then
    die "port $PORT already answers, but not with the Superset of this checkout; stop it or set RETAILFLOW_SUPERSET_PORT"
  fi
  # A metadata database written with another SECRET_KEY (a deleted .env.local, another checkout's
  # Superset) fails every page with "Invalid decryption key". The database's comment records the
  # fingerprint of the key that wrote it; on a mismatch it starts over: everything in it is derived
  # here (the admin from .env.local, the dashboards from the bundle).
  meta() { PGPASSWORD="$db_pw" psql -h 127.0.0.1 -U "$PG_ROLE" -d "$PG_DB" -v ON_ERROR_STOP=1 -qAtX "$@"; }
  mark="retailflow-superset-key $(python3 -c 'import hashlib, os; print(hashlib.sha256(os.environ["SUPERSET_SECRET_KEY"].encode()).hexdigest()[:16])')"
  recorded="$(meta -c "select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = current_database()")"
  if [[ "$(meta -c "select count(*) from pg_tables where schemaname = 'public' and tablename = 'dbs'")" != 0 ]] \
     && { [[ -n "$recorded" && "$recorded" != "$mark" ]] || [[ -z "$recorded" && "$new_key" == 1 ]]; }; then
    log "the metadata database '$PG_DB' was written with another secret key (RETAILFLOW_SUPERSET_SECRET_KEY): recreating its contents"
    meta -c "drop owned by current_user" >/dev/null
  fi
  log "preparing the metadata database and the admin (db upgrade, init; about a minute the first time)"
  python "$FILES/superset_setup.py" setup >>"$RUN/superset.log" 2>&1 \
    || die "superset setup failed (see ${RUN#"$ROOT"/}/superset.log)"
  meta -c "comment on database $PG_DB is '$mark'" >/dev/null
  log "starting gunicorn ($WORKERS workers) on $url"
  cd "$ROOT"
  setsid "$VENV/bin/gunicorn" --workers "$WORKERS" --worker-class gthread --threads 4 --timeout 120 \
    --bind "127.0.0.1:$PORT" --access-logfile - "superset.app:create_app()" \
    >>"$RUN/superset.log" 2>&1 </dev/null &
  echo $! >"$RUN/superset.pid"
  for _ in $(seq 1 120); do healthy && break; running_pid >/dev/null || break; sleep 1; done
  healthy || die "Superset did not come up (see ${RUN#"$ROOT"/}/superset.log)"
  log "up (pid $(cat "$RUN/superset.pid"))"
fi

# ---------------------------------------------------------------- import the dashboards
log "importing the dashboard bundle (charts/retailflow/files/superset/bundle)"
"$ROOT/hack/with-env" "$UV" run --quiet --project "$ROOT/dags" python -m retailflow_pipeline.dashboards
cat <<EOF

Superset: $url
  log in as $RETAILFLOW_SUPERSET_USERNAME; the password is RETAILFLOW_SUPERSET_PASSWORD in .env.local:
    sed -n 's/^RETAILFLOW_SUPERSET_PASSWORD=//p' .env.local
  stop it with: make stop
EOF
