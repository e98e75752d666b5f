# Helpers for .env.local, the git-ignored file (mode 600) that keeps the local services' generated
# settings and passwords, and for the PostgreSQL roles those passwords belong to. Sourced, not run,
# after hack/lib.sh (ROOT).
# Each writer changes only its own keys, so the services, Airflow and Superset scripts can share the file.
#   env_get KEY          prints the value (empty if unset)
#   env_set KEY VALUE    sets or replaces KEY, keeping every other line
#   env_ensure KEY       prints KEY's value, generating a random password first if it is unset
#   env_setting KEY [DEFAULT]  prints KEY from the environment, else from the file, else DEFAULT
#   new_password         prints a new random password (32 hex digits)
ENV_FILE="${RETAILFLOW_ENV_FILE:-$ROOT/.env.local}"

new_password() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }

env_get() { [[ -f "$ENV_FILE" ]] && sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1 || true; }

env_setting() {
  local value="${!1:-}"
  [[ -n "$value" ]] || value="$(env_get "$1")"
  printf '%s\n' "${value:-${2:-}}"
}

env_set() {
  local key="$1" value="$2" tmp
  tmp="$(umask 077; mktemp "$ENV_FILE.XXXXXX")"
  if [[ -f "$ENV_FILE" ]]; then
    grep -v "^$key=" "$ENV_FILE" >"$tmp" || true
  else
    printf '# RetailFlow local settings and generated passwords (written by hack/*.sh; never commit)\n' >"$tmp"
  fi
  printf '%s=%s\n' "$key" "$value" >>"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$ENV_FILE"
}

env_ensure() {
  local key="$1" value
  value="$(env_get "$key")"
  if [[ -z "$value" ]]; then
    value="$(new_password)"
    env_set "$key" "$value"
  fi
  printf '%s\n' "$value"
}

# pg_ensure_role_db ROLE DB PASSWORD [ATTRIBUTES]  (root only: runs psql as the postgres user)
#   creates the PostgreSQL login role, or sets its password, and the database it owns if missing;
#   the password goes through psql's standard input, never a command line
pg_ensure_role_db() {
  local role="$1" db="$2" pw="$3" attrs="${4:-}"
  pg_as_postgres() { (cd / && runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAtX -d postgres "$@"); }
  if [[ -z "$(pg_as_postgres -c "select 1 from pg_roles where rolname = '$role'")" ]]; then
    pg_as_postgres <<<"create role \"$role\" login $attrs password '$pw'" >/dev/null
  else
    pg_as_postgres <<<"alter role \"$role\" login $attrs password '$pw'" >/dev/null
  fi
  if [[ -z "$(pg_as_postgres -c "select 1 from pg_database where datname = '$db'")" ]]; then
    pg_as_postgres -c "create database \"$db\" owner \"$role\"" >/dev/null
  fi
}
