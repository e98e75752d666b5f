# Helpers for .env.local, the git-ignored file (mode 600) that keeps the local services' generated
# settings and passwords. Sourced, not run. Each writer changes only its own keys, so the services,
# Airflow and Superset scripts can share the file.
#   env_get KEY          prints the value (empty if unset)
#   env_set KEY VALUE    sets or replaces KEY, keeping every other line
#   env_ensure KEY       prints KEY's value, generating a random password first if it is unset
ENV_FILE="${RETAILFLOW_ENV_FILE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.env.local}"

env_get() { [[ -f "$ENV_FILE" ]] && sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1 || true; }

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
    value="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    env_set "$key" "$value"
  fi
  printf '%s\n' "$value"
}
